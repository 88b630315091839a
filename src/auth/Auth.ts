/**
 * Auth: turns an access token into a Principal (JWT via `jose`). It only
 * verifies tokens; who may do what in a thread is Access's (src/threads).
 */
import { Context, Data, Duration, Effect, Either, Layer, Option, Schema } from "effect"
import { errors as JoseErrors, jwtVerify } from "jose"
import type { StartupError } from "../domain/Errors.ts"
import { describe, Identifier } from "../protocol/ClientFrames.ts"
import { type KeyOptions, makeKeyResolver } from "./Keys.ts"

export interface Principal {
  readonly userId: string
  /** When the token stops being accepted (epoch ms: `exp` plus the allowed clock skew), if it has an `exp`. */
  readonly expiresAt: Option.Option<number>
}

export class AuthError extends Data.TaggedError("AuthError")<{
  readonly reason: string
  /** The token could not be checked (the key set is unreachable): not the client's fault. */
  readonly unavailable?: boolean
}> {}

export interface AuthOptions extends KeyOptions {
  readonly issuer: Option.Option<string>
  readonly audience: Option.Option<string>
  readonly clockSkew: Duration.Duration
  /** Production refuses tokens without `exp`. */
  readonly requireExpiry: boolean
}

export class Auth extends Context.Tag("agent-chat/Auth")<Auth, {
  readonly verify: (token: string) => Effect.Effect<Principal, AuthError>
  /** The token algorithms accepted, for readiness reports. */
  readonly algorithms: ReadonlyArray<string>
}>() {}

const describeJoseError = (error: unknown): string => {
  if (error instanceof JoseErrors.JWTExpired) return "token expired"
  if (error instanceof JoseErrors.JWTClaimValidationFailed) {
    if (error.claim === "nbf") return "token not yet valid"
    if (error.reason === "missing") return `token has no "${error.claim}" claim`
    return `token "${error.claim}" claim is not accepted`
  }
  if (error instanceof JoseErrors.JWSSignatureVerificationFailed) return "bad token signature"
  if (error instanceof JoseErrors.JOSEAlgNotAllowed) return "token algorithm not allowed"
  if (error instanceof JoseErrors.JWKSNoMatchingKey) return "no key matches the token's kid"
  if (error instanceof JoseErrors.JWKSMultipleMatchingKeys) return "several keys match the token's kid"
  if (error instanceof JoseErrors.JWSInvalid || error instanceof JoseErrors.JWTInvalid) return "malformed token"
  return "invalid token"
}

const decodeUserId = Schema.decodeUnknownEither(Identifier)

const make = (options: AuthOptions) =>
  Effect.gen(function*() {
    const keys = yield* makeKeyResolver(options)
    const skewMillis = Duration.toMillis(options.clockSkew)
    const verifyOptions = {
      algorithms: [...keys.algorithms],
      clockTolerance: Duration.toSeconds(options.clockSkew),
      requiredClaims: options.requireExpiry ? ["exp", "sub"] : ["sub"],
      ...Option.match(options.issuer, { onNone: () => ({}), onSome: (issuer) => ({ issuer }) }),
      ...Option.match(options.audience, { onNone: () => ({}), onSome: (audience) => ({ audience }) })
    }

    const verify = (token: string) =>
      Effect.tryPromise({
        try: () => jwtVerify(token, keys.getKey, verifyOptions),
        catch: (error) =>
          error instanceof JoseErrors.JWKSTimeout || error instanceof JoseErrors.JWKSInvalid ||
            (error instanceof Error && error.name === "TypeError")
            ? new AuthError({ reason: "the token key set is unavailable", unavailable: true })
            : new AuthError({ reason: describeJoseError(error) })
      }).pipe(
        // The user id goes into every query the connection makes: one that could not be a stored id
        // (a NUL, which PostgreSQL refuses) is the token's fault, refused here rather than as an outage later.
        Effect.flatMap(({ payload }) =>
          Either.match(decodeUserId(payload.sub), {
            onLeft: (error) =>
              Effect.fail(new AuthError({ reason: `token "sub" is not a user id: ${describe(error)}` })),
            onRight: (userId) =>
              Effect.succeed<Principal>({
                userId,
                expiresAt: Option.map(Option.fromNullable(payload.exp), (exp) => exp * 1000 + skewMillis)
              })
          })
        ),
        Effect.withSpan("Auth.verify")
      )

    return Auth.of({ verify, algorithms: keys.algorithms })
  })

export const AuthLive = (options: AuthOptions): Layer.Layer<Auth, StartupError> => Layer.effect(Auth, make(options))

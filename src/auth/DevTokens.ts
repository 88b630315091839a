/**
 * DevTokens: issues HS256 tokens for any user, behind `POST /api/dev/token`.
 * Only the development graph provides it; elsewhere the route answers 404.
 */
import { Context, Effect, Layer, Option, Redacted } from "effect"
import { SignJWT } from "jose"
import type { AuthOptions } from "./Auth.ts"

export class DevTokens extends Context.Tag("agent-chat/DevTokens")<DevTokens, {
  readonly issue: (userId: string) => Effect.Effect<string>
}>() {}

/** Signs a token the given Auth options accept. */
export interface DevTokenOptions extends Pick<AuthOptions, "issuer" | "audience"> {
  readonly secret: Redacted.Redacted
}

export const signToken = (
  options: DevTokenOptions,
  userId: string,
  ttlSeconds = 12 * 3600
) =>
  Effect.promise(() => {
    let jwt = new SignJWT({})
      .setProtectedHeader({ alg: "HS256", typ: "JWT" })
      .setSubject(userId)
      .setIssuedAt()
      .setExpirationTime(`${ttlSeconds}s`)
    if (Option.isSome(options.issuer)) jwt = jwt.setIssuer(options.issuer.value)
    if (Option.isSome(options.audience)) jwt = jwt.setAudience(options.audience.value)
    return jwt.sign(new TextEncoder().encode(Redacted.value(options.secret)))
  })

export const DevTokensLive = (options: DevTokenOptions): Layer.Layer<DevTokens> =>
  Layer.succeed(DevTokens, DevTokens.of({ issue: (userId) => signToken(options, userId) }))

/**
 * The keys access tokens are verified with: an HS256 secret, a PEM public
 * key (RS256 or ES256, told by the key itself), and a JWKS URL whose keys
 * are cached and refetched when a token names a `kid` the cache lacks, so
 * the issuer can rotate keys without a restart. Only the algorithms of the
 * configured keys are accepted; `none` never is.
 */
import { Duration, Effect, Redacted } from "effect"
import { createRemoteJWKSet, type FlattenedJWSInput, type JWTHeaderParameters } from "jose"
import { createPublicKey, createSecretKey, type KeyObject } from "node:crypto"
import { StartupError } from "../domain/Errors.ts"

export interface KeyOptions {
  /** HS256 shared secret. */
  readonly secret?: Redacted.Redacted
  /** SPKI PEM of an RSA (RS256) or EC P-256 (ES256) public key. */
  readonly publicKey?: string
  readonly jwksUrl?: URL
  /** Least time between two JWKS fetches (when a token names an unknown `kid`). */
  readonly jwksCooldown?: Duration.Duration
  /** How long fetched JWKS keys are trusted without a refetch. */
  readonly jwksMaxAge?: Duration.Duration
}

export type Algorithm = "HS256" | "RS256" | "ES256"

export interface KeyResolver {
  readonly algorithms: ReadonlyArray<Algorithm>
  readonly getKey: (
    header: JWTHeaderParameters,
    token: FlattenedJWSInput
  ) => Promise<KeyObject | Uint8Array | CryptoKey>
}

const pemAlgorithm = (key: KeyObject): Algorithm | undefined => {
  if (key.asymmetricKeyType === "rsa") return "RS256"
  if (key.asymmetricKeyType === "ec" && key.asymmetricKeyDetails?.namedCurve === "prime256v1") return "ES256"
  return undefined
}

export const makeKeyResolver = (options: KeyOptions): Effect.Effect<KeyResolver, StartupError> =>
  Effect.gen(function*() {
    // A KeyObject, not the secret's bytes: jose imports bytes into a CryptoKey on every verification, and
    // converts a KeyObject once (77 against 54 µs a verification, measured): a cost of every connection.
    const secret = options.secret === undefined
      ? undefined
      : createSecretKey(Buffer.from(Redacted.value(options.secret), "utf8"))
    const pem = options.publicKey === undefined ? undefined : yield* Effect.try({
      // Environments often carry a PEM on one line with literal "\n".
      try: () => createPublicKey(options.publicKey!.replaceAll("\\n", "\n")),
      catch: (cause) => new StartupError({ component: "auth", reason: "JWT_PUBLIC_KEY is not a PEM public key", cause })
    })
    const pemAlg = pem === undefined ? undefined : pemAlgorithm(pem)
    if (pem !== undefined && pemAlg === undefined) {
      return yield* new StartupError({ component: "auth", reason: "JWT_PUBLIC_KEY must be an RSA or P-256 EC key" })
    }
    const jwks = options.jwksUrl === undefined ? undefined : createRemoteJWKSet(options.jwksUrl, {
      cooldownDuration: Duration.toMillis(options.jwksCooldown ?? Duration.seconds(30)),
      cacheMaxAge: Duration.toMillis(options.jwksMaxAge ?? Duration.minutes(10)),
      timeoutDuration: 5_000
    })
    const algorithms = new Set<Algorithm>()
    if (secret !== undefined) algorithms.add("HS256")
    if (pemAlg !== undefined) algorithms.add(pemAlg)
    if (jwks !== undefined) ["RS256", "ES256"].forEach((alg) => algorithms.add(alg as Algorithm))
    if (algorithms.size === 0) {
      return yield* new StartupError({ component: "auth", reason: "no key to verify tokens with" })
    }
    const getKey: KeyResolver["getKey"] = async (header, token) => {
      if (header.alg === "HS256" && secret !== undefined) return secret
      // A token naming a kid is the JWKS's; one without is the PEM key's.
      if (header.alg === pemAlg && pem !== undefined && (jwks === undefined || header.kid === undefined)) return pem
      if (jwks !== undefined) return jwks(header, token)
      return pem ?? secret!
    }
    return { algorithms: [...algorithms], getKey }
  })

/** Tokens for tests, signed with the test secret of `makeTestConfig`. */
import { Option, Redacted } from "effect"
import { SignJWT } from "jose"
import { makeTestConfig } from "../../src/config/AppConfig.ts"

export const testSecret = Option.getOrThrow(makeTestConfig().jwtSecret)

export interface TokenOptions {
  readonly secret?: string
  readonly expiresIn?: number | null
  readonly notBefore?: number
  readonly issuer?: string
  readonly audience?: string
  readonly subject?: string | null
}

export const sign = (userId: string, options: TokenOptions = {}): Promise<string> => {
  const now = Math.floor(Date.now() / 1000)
  let jwt = new SignJWT({}).setProtectedHeader({ alg: "HS256", typ: "JWT" }).setIssuedAt(now)
  if (options.subject !== null) jwt = jwt.setSubject(options.subject ?? userId)
  if (options.expiresIn !== null) jwt = jwt.setExpirationTime(now + (options.expiresIn ?? 3600))
  if (options.notBefore !== undefined) jwt = jwt.setNotBefore(now + options.notBefore)
  if (options.issuer !== undefined) jwt = jwt.setIssuer(options.issuer)
  if (options.audience !== undefined) jwt = jwt.setAudience(options.audience)
  return jwt.sign(new TextEncoder().encode(options.secret ?? Redacted.value(testSecret)))
}

const base64url = (value: unknown) => Buffer.from(JSON.stringify(value)).toString("base64url")

/** An unsigned token (`alg: none`), which must always be refused. */
export const unsignedToken = (userId: string) =>
  `${base64url({ alg: "none", typ: "JWT" })}.${base64url({ sub: userId, exp: Math.floor(Date.now() / 1000) + 3600 })}.`

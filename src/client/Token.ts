/** Reading a JWT's `exp` without verifying it (the server does that), with what browsers and Node both have. */

const decodeBase64Url = (text: string): string => {
  const base64 = text.replace(/-/g, "+").replace(/_/g, "/")
  const binary = atob(base64 + "=".repeat((4 - base64.length % 4) % 4))
  return new TextDecoder().decode(Uint8Array.from(binary, (c) => c.charCodeAt(0)))
}

/** When the token expires, in epoch milliseconds; undefined for a token without `exp` or not a JWT. */
export const expiryOf = (token: string): number | undefined => {
  const payload = token.split(".")[1]
  if (payload === undefined) return undefined
  try {
    const claims: unknown = JSON.parse(decodeBase64Url(payload))
    if (typeof claims !== "object" || claims === null) return undefined
    const exp = (claims as { readonly exp?: unknown }).exp
    return typeof exp === "number" && Number.isFinite(exp) ? exp * 1000 : undefined
  } catch {
    return undefined
  }
}

/**
 * How long to wait before refreshing a token that expires in `remainingMs`: `aheadMs` before its expiry,
 * or half-way for a token that lives less than twice that; never sooner than `minimumMs`.
 */
export const refreshDelay = (remainingMs: number, aheadMs: number, minimumMs = 250): number =>
  Math.min(2 ** 31 - 1, Math.max(minimumMs, remainingMs - Math.min(aheadMs, remainingMs / 2)))

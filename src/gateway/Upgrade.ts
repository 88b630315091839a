/**
 * Whether a `/ws` upgrade may proceed, decided before the handshake and
 * answered as plain HTTP with a JSON body (docs/PROTOCOL.md section 1):
 * 503 while not ready, 403 for a browser origin not allowed, 401 for any
 * token problem (503 when the key set is unreachable), 429 past the
 * connections a user may hold. It never answers 500.
 */
import { Effect, Either, Metric } from "effect"
import type { IncomingMessage } from "node:http"
import { STATUS_CODES } from "node:http"
import type { Duplex } from "node:stream"
import { Auth, type Principal } from "../auth/Auth.ts"
import { AppConfig } from "../config/AppConfig.ts"
import { Readiness } from "../domain/Health.ts"
import * as Metrics from "../metrics/Metrics.ts"
import { RefusalCode } from "../protocol/Codes.ts"
import { Hub } from "./Hub.ts"

/** Writes an HTTP response on a socket that was never upgraded, then closes it. */
export const refuse = (socket: Duplex, status: number, body: Record<string, string>) => {
  if (!socket.writable) return socket.destroy()
  const json = JSON.stringify(body)
  socket.once("finish", () => socket.destroy())
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ""}\r\n` +
      "Content-Type: application/json\r\n" +
      `Content-Length: ${Buffer.byteLength(json)}\r\n` +
      "Connection: close\r\n\r\n" + json
  )
}

export interface Refusal {
  readonly status: number
  readonly error: string
  readonly reason: string
}

/** Answers a refused upgrade, counted by its reason. */
export const sendRefusal = (socket: Duplex, refusal: Refusal) => {
  Metric.tagged(Metrics.upgradeRefusals, "reason", refusal.error).unsafeUpdate(1, [])
  refuse(socket, refusal.status, { error: refusal.error, reason: refusal.reason })
}

const refusal = (code: RefusalCode, reason: string): Either.Either<Principal, Refusal> =>
  Either.left({ status: code.status, error: code.error, reason })

/** The token from `Authorization: Bearer …`, else from `?token=`. */
export const tokenOf = (request: IncomingMessage, url: URL): string | undefined => {
  const header = request.headers.authorization
  if (header !== undefined) {
    const match = /^Bearer\s+(\S+)\s*$/i.exec(header)
    return match?.[1]
  }
  return url.searchParams.get("token") ?? undefined
}

/**
 * Whether an `Origin` is the request's own: same host and port as the `Host` header. The scheme is
 * left out, since TLS may end at a proxy in front, so the page's `https` origin meets a plain
 * request; the `Host` header is read with the origin's scheme, so a default port written out or left
 * implicit compares equal.
 */
export const isOwnOrigin = (origin: string, host: string | undefined): boolean => {
  // Only a bare host[:port]: a URL parser would drop the rest of `host/path` or `user@host` and compare what is left.
  if (host === undefined || /[\s/?#@\\]/.test(host)) return false
  try {
    const page = new URL(origin)
    if (page.protocol !== "http:" && page.protocol !== "https:") return false
    return page.host === new URL(`${page.protocol}//${host}`).host
  } catch {
    return false // "null" (a sandboxed frame, a file) or a malformed header
  }
}

/**
 * The allow-list guards against cross-site WebSocket hijacking, a browser attack; browsers always
 * send `Origin`. A client without one (a CLI, another server) is not a browser page and goes on to
 * the token check, and the page this server serves may always connect back to it.
 */
export const originAllowed = (
  allowed: ReadonlySet<string>,
  origin: string | undefined,
  host: string | undefined
): boolean => origin === undefined || allowed.size === 0 || allowed.has(origin) || isOwnOrigin(origin, host)

/** The upgrade's verdict: the principal to connect as, or the refusal to answer with. */
export const makeUpgradeCheck = Effect.gen(function*() {
  const auth = yield* Auth
  const readiness = yield* Readiness
  const config = yield* AppConfig
  const hub = yield* Hub
  const allowedOrigins = new Set(config.limits.allowedOrigins)

  return (request: IncomingMessage, url: URL): Effect.Effect<Either.Either<Principal, Refusal>> =>
    Effect.gen(function*() {
      if ((yield* readiness.get) !== "ready") {
        return refusal(RefusalCode.Unavailable, "the server is not ready; retry shortly")
      }
      const origin = request.headers.origin
      if (!originAllowed(allowedOrigins, origin, request.headers.host)) {
        return refusal(RefusalCode.Forbidden, `origin ${origin} is not allowed`)
      }
      const token = tokenOf(request, url)
      if (token === undefined) return refusal(RefusalCode.Unauthorized, "missing access token")
      const principal = yield* auth.verify(token).pipe(Effect.either)
      if (principal._tag === "Left") {
        const code = principal.left.unavailable === true ? RefusalCode.Unavailable : RefusalCode.Unauthorized
        return refusal(code, principal.left.reason)
      }
      if (hub.connectionsOf(principal.right.userId) >= config.limits.connectionsPerUser) {
        return refusal(
          RefusalCode.TooManyConnections,
          `at most ${config.limits.connectionsPerUser} connections per user`
        )
      }
      return Either.right(principal.right)
    })
})

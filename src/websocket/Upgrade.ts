/**
 * The `/ws` upgrade. It owns the `ws` server so the frame limit is enforced
 * by the socket layer before a frame is buffered (close 1009), and it
 * refuses before upgrading, as plain HTTP with a JSON body: 401 for any
 * token problem, 403 for a browser origin not allowed, 429 past the
 * connections a user may hold, 503 while not ready. It never answers 500.
 */
import { Effect, FiberSet, Metric } from "effect"
import type { IncomingMessage } from "node:http"
import { STATUS_CODES } from "node:http"
import type { Duplex } from "node:stream"
import { type WebSocket, WebSocketServer } from "ws"
import { Auth, type Principal } from "../auth/Auth.ts"
import { AppConfig } from "../config/AppConfig.ts"
import { CloseCode, RefusalCode } from "../domain/Codes.ts"
import { Readiness } from "../http/Readiness.ts"
import * as Metrics from "../metrics/Metrics.ts"
import { makeSession } from "./Session.ts"
import { WebSocketHub } from "./WebSocketHub.ts"

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

const refusal = (socket: Duplex, code: RefusalCode, reason: string) => {
  Metric.tagged(Metrics.upgradeRefusals, "reason", code.error).unsafeUpdate(1, [])
  refuse(socket, code.status, { error: code.error, reason })
}

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

export const makeUpgradeHandler = Effect.gen(function*() {
  const auth = yield* Auth
  const readiness = yield* Readiness
  const config = yield* AppConfig
  const session = yield* makeSession
  const hub = yield* WebSocketHub
  const allowedOrigins = new Set(config.limits.allowedOrigins)
  const runFork = yield* FiberSet.makeRuntime<never>()
  const sockets = new Set<WebSocket>()
  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: config.maxFrameBytes,
    perMessageDeflate: false,
    clientTracking: false
  })

  // Shutdown: tell every client to reconnect elsewhere; the FiberSet then ends the sessions.
  yield* Effect.addFinalizer(() =>
    Effect.sync(() => {
      for (const ws of sockets) ws.close(CloseCode.GoingAway, "server shutting down")
    })
  )

  const accept = (request: IncomingMessage, socket: Duplex, head: Buffer, principal: Principal) =>
    wss.handleUpgrade(request, socket, head, (ws) => {
      sockets.add(ws)
      ws.on("error", () => {})
      ws.on("close", () => sockets.delete(ws))
      try {
        session.open(ws, principal)
      } catch (defect) {
        runFork(Effect.logError("connection failed", defect))
        ws.close(CloseCode.InternalError, "internal error")
      }
    })

  const upgrade = (request: IncomingMessage, socket: Duplex, head: Buffer) =>
    Effect.gen(function*() {
      const url = new URL(request.url ?? "/", "http://localhost")
      if (url.pathname !== "/ws") {
        return refuse(socket, 404, { error: "not_found", reason: "no WebSocket here; use /ws" })
      }
      if ((yield* readiness.get) !== "ready") {
        return refusal(socket, RefusalCode.Unavailable, "the server is not ready; retry shortly")
      }
      const origin = request.headers.origin
      if (!originAllowed(allowedOrigins, origin, request.headers.host)) {
        return refusal(socket, RefusalCode.Forbidden, `origin ${origin} is not allowed`)
      }
      const token = tokenOf(request, url)
      if (token === undefined) return refusal(socket, RefusalCode.Unauthorized, "missing access token")
      const principal = yield* auth.verify(token).pipe(Effect.either)
      if (principal._tag === "Left") {
        const code = principal.left.unavailable === true ? RefusalCode.Unavailable : RefusalCode.Unauthorized
        return refusal(socket, code, principal.left.reason)
      }
      if (hub.connectionsOf(principal.right.userId) >= config.limits.connectionsPerUser) {
        return refusal(
          socket,
          RefusalCode.TooManyConnections,
          `at most ${config.limits.connectionsPerUser} connections per user`
        )
      }
      accept(request, socket, head, principal.right)
    }).pipe(
      Effect.catchAllCause((cause) =>
        Effect.zipRight(
          Effect.logError("upgrade failed", cause),
          Effect.sync(() => refusal(socket, RefusalCode.Unavailable, "the server could not accept the connection"))
        )
      )
    )

  return (request: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on("error", () => socket.destroy())
    runFork(upgrade(request, socket, head))
  }
})

/**
 * The `ws` adapter, the only module that knows the `ws` library. It owns
 * the WebSocket server, so the frame limit is enforced by the socket layer
 * before a frame is buffered (close 1009) and invalid UTF-8 is closed with
 * 1007; it answers refused upgrades as plain HTTP, and hands each accepted
 * socket to a Session through the core's small socket interface.
 */
import { Effect, Either, FiberSet } from "effect"
import type { IncomingMessage } from "node:http"
import type { Socket } from "node:net"
import type { Duplex } from "node:stream"
import { WebSocket, WebSocketServer } from "ws"
import { AppConfig } from "../config/AppConfig.ts"
import { CloseCode, RefusalCode } from "../protocol/Codes.ts"
import { makeSession } from "./Session.ts"
import type { ClientSocket } from "./Socket.ts"
import { makeUpgradeCheck, refuse, sendRefusal } from "./Upgrade.ts"

const TEXT = { binary: false } as const

/** A `ws` socket as the core sees it: batches are corked into one write. */
const clientSocket = (ws: WebSocket): ClientSocket => ({
  send: (frames, written) => {
    const raw = (ws as unknown as { _socket?: Socket })._socket
    raw?.cork()
    const last = frames.length - 1
    for (let i = 0; i < last; i++) ws.send(frames[i]!, TEXT)
    ws.send(frames[last]!, TEXT, written)
    raw?.uncork()
  },
  close: (code, reason) => {
    if (ws.readyState === WebSocket.OPEN || ws.readyState === WebSocket.CONNECTING) ws.close(code, reason)
  },
  terminate: () => ws.terminate(),
  ping: () => ws.ping(),
  isOpen: () => ws.readyState === WebSocket.OPEN
})

/** The HTTP server's `upgrade` listener; closes every socket with 1001 when its scope ends. */
export const makeWsAdapter = Effect.gen(function*() {
  const config = yield* AppConfig
  const check = yield* makeUpgradeCheck
  const session = yield* makeSession
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

  const accept = (ws: WebSocket, principal: Parameters<typeof session.open>[1]) => {
    sockets.add(ws)
    ws.on("error", () => {})
    try {
      const events = session.open(clientSocket(ws), principal)
      ws.on("message", (data, binary) => events.message(binary ? "" : data.toString(), binary))
      ws.on("pong", events.pong)
      ws.on("close", (code) => {
        sockets.delete(ws)
        events.closed(code)
      })
    } catch (defect) {
      sockets.delete(ws)
      runFork(Effect.logError("connection failed", defect))
      ws.close(CloseCode.InternalError, "internal error")
    }
  }

  const upgrade = (request: IncomingMessage, socket: Duplex, head: Buffer) =>
    Effect.gen(function*() {
      const url = new URL(request.url ?? "/", "http://localhost")
      if (url.pathname !== "/ws") {
        return refuse(socket, 404, { error: "not_found", reason: "no WebSocket here; use /ws" })
      }
      const verdict = yield* check(request, url)
      if (Either.isLeft(verdict)) return sendRefusal(socket, verdict.left)
      wss.handleUpgrade(request, socket, head, (ws) => accept(ws, verdict.right))
    }).pipe(
      Effect.catchAllCause((cause) =>
        Effect.zipRight(
          Effect.logError("upgrade failed", cause),
          Effect.sync(() =>
            sendRefusal(socket, { ...RefusalCode.Unavailable, reason: "the server could not accept the connection" })
          )
        )
      )
    )

  return (request: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on("error", () => socket.destroy())
    runFork(upgrade(request, socket, head))
  }
})

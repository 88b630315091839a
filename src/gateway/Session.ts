/**
 * Session: one connection's life. It registers the connection with the
 * hub in a scope of its own, sends `welcome`, then answers the client's
 * frames one at a time, in order, until the socket closes and the scope is
 * released. Nothing a client sends ends the process or the connection,
 * except a flood (1008) or too many frames in flight (1008).
 */
import { Clock, Duration, Effect, Either, Exit, Fiber, FiberSet, identity, Option, Runtime, Scope } from "effect"
import type { Principal } from "../auth/Auth.ts"
import { AppConfig } from "../config/AppConfig.ts"
import { decodeFrame } from "../protocol/ClientFrames.ts"
import { CloseCode, ErrorCode } from "../protocol/Codes.ts"
import * as Frames from "../protocol/ServerFrames.ts"
import type { Connection } from "./Connection.ts"
import { Hub } from "./Hub.ts"
import { makeRequests } from "./Requests.ts"
import type { ClientSocket, SocketEvents } from "./Socket.ts"

/** A frame as it came off the socket. */
interface RawFrame {
  readonly data: string
  readonly binary: boolean
}

export const makeSession = Effect.gen(function*() {
  const hub = yield* Hub
  const config = yield* AppConfig
  const requests = yield* makeRequests
  const runSync = Runtime.runSync(yield* Effect.runtime<never>())
  const traced = Option.isSome(config.tracing.otlpEndpoint)
  const { limits } = config
  // Frame handlers run here, so shutdown interrupts whatever is in flight.
  const runFork = yield* FiberSet.makeRuntime<never>()

  const handle = (connection: Connection, raw: RawFrame): Effect.Effect<void> => {
    const admission = connection.admit(Date.now())
    if (admission === "flooding") {
      return Effect.sync(() => connection.close(CloseCode.PolicyViolation, "flooding: too many frames"))
    }
    if (admission === "rate_limited") {
      return Effect.sync(() =>
        connection.reply(Frames.error(
          decodeFrame(raw.data).pipe(Either.match({ onLeft: (e) => e.ref, onRight: (f) => f.id })),
          ErrorCode.RateLimited,
          `at most ${limits.framesPerSecond} frames per second; slow down`
        ))
      )
    }
    if (raw.binary) {
      return Effect.sync(() =>
        connection.reply(
          Frames.error(undefined, ErrorCode.InvalidMessage, "binary frames are not supported; send JSON text")
        )
      )
    }
    const decoded = decodeFrame(raw.data)
    if (Either.isLeft(decoded)) {
      return Effect.sync(() =>
        connection.reply(Frames.error(decoded.left.ref, ErrorCode.InvalidMessage, decoded.left.message))
      )
    }
    return requests.answer(connection, decoded.right)
  }

  /**
   * Takes over an upgraded socket: registers its connection in a scope of its own, sends `welcome`, and
   * returns what the socket must report. Synchronous, so the adapter wires those before any frame can
   * arrive; a fiber runs only while frames wait.
   */
  const open = (socket: ClientSocket, principal: Principal): SocketEvents => {
    const scope = Effect.runSync(Scope.make())
    const connection = Effect.runSync(Scope.extend(hub.register(socket, principal), scope))
    // With export on, one span covers the connection's life and parents its frames' spans; without
    // it, an idle connection carries no span at all.
    const span = traced
      ? runSync(Scope.extend(
        Effect.makeSpanScoped("WebSocket.connection", {
          attributes: { connection_id: connection.id, user_id: principal.userId },
          root: true
        }),
        scope
      ))
      : undefined
    const annotated = (effect: Effect.Effect<void>) =>
      effect.pipe(
        Effect.annotateLogs({ component: "websocket", connection_id: connection.id, user_id: principal.userId }),
        span === undefined ? identity : Effect.withParentSpan(span)
      )
    const inbox: Array<RawFrame> = []
    // Set before the fiber starts, cleared by it in the same step that finds the inbox empty.
    let processing = false
    let current: Fiber.RuntimeFiber<void> | undefined

    const drain: Effect.Effect<void> = Effect.suspend(() => {
      const next = inbox.shift()
      if (next === undefined) {
        processing = false
        return Effect.void
      }
      return Effect.zipRight(handle(connection, next), drain)
    })

    const message = (data: string, binary: boolean) => {
      hub.counters.framesIn++
      if (inbox.length >= config.inboxCapacity) {
        return connection.close(CloseCode.PolicyViolation, "too many frames in flight")
      }
      inbox.push({ data: binary ? "" : data, binary })
      if (!processing) {
        processing = true
        current = runFork(annotated(drain))
      }
    }
    const closed = (code: number) => {
      inbox.length = 0
      const fiber = current
      runFork(annotated(Effect.all([
        fiber === undefined ? Effect.void : Fiber.interrupt(fiber),
        Scope.close(scope, Exit.void),
        Effect.logDebug("connection closed").pipe(Effect.annotateLogs({ close_code: code }))
      ], { discard: true })))
    }

    connection.armExpiry(Date.now())
    connection.reply(Frames.welcome({
      connectionId: connection.id,
      userId: principal.userId,
      heartbeatMs: Duration.toMillis(config.heartbeat),
      now: new Date(Effect.runSync(Clock.currentTimeMillis))
    }))
    return { message, pong: () => connection.pong(), closed }
  }

  return { open } as const
})

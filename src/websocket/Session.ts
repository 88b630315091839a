/**
 * Session: one connection's life. It registers the connection's emitter
 * with the hub, sends `welcome`, then handles the client's frames one at a
 * time, in order. Every failure becomes an `error` frame; nothing a client
 * sends ends the process or the connection.
 */
import { Cause, Clock, Duration, Effect, Either, Exit, Fiber, FiberSet, identity, Option, Runtime, Scope } from "effect"
import type { WebSocket } from "ws"
import { Auth, type Principal } from "../auth/Auth.ts"
import { AppConfig } from "../config/AppConfig.ts"
import { DatabaseMonitor } from "../database/Monitor.ts"
import { Threads } from "../database/Threads.ts"
import { CloseCode, ErrorCode } from "../domain/Codes.ts"
import { type DatabaseError, RequestError } from "../domain/Errors.ts"
import { type ClientFrame, decodeFrame } from "../domain/Frames.ts"
import * as Frames from "../domain/ServerFrames.ts"
import { Supervisor } from "../runs/Supervisor.ts"
import { Access } from "../threads/Access.ts"
import { Members } from "../threads/Members.ts"
import type { Connection } from "./Connection.ts"
import { WebSocketHub } from "./WebSocketHub.ts"

/** A frame as it came off the socket. */
export interface RawFrame {
  readonly data: string
  readonly binary: boolean
}

export const makeSession = Effect.gen(function*() {
  const hub = yield* WebSocketHub
  const auth = yield* Auth
  const threads = yield* Threads
  const access = yield* Access
  const members = yield* Members
  const supervisor = yield* Supervisor
  const config = yield* AppConfig
  const monitor = yield* DatabaseMonitor
  const runSync = Runtime.runSync(yield* Effect.runtime<never>())
  const traced = Option.isSome(config.tracing.otlpEndpoint)
  const { limits } = config
  // Frame handlers run here, so shutdown interrupts whatever is in flight.
  const runFork = yield* FiberSet.makeRuntime<never>()

  const withinThreadLimit = (connection: Connection, threadId: string) =>
    connection.threads.has(threadId) || connection.threads.size < limits.threadsPerConnection
      ? Effect.void
      : Effect.fail(RequestError.forbidden(`a connection may join at most ${limits.threadsPerConnection} threads`))

  const ensureJoined = (connection: Connection, threadId: string) =>
    connection.threads.has(threadId)
      ? Effect.void
      : Effect.zipRight(
        withinThreadLimit(connection, threadId),
        hub.join(connection, threadId, Option.none(), () => {})
      )

  const dispatch = (
    connection: Connection,
    frame: ClientFrame
  ): Effect.Effect<void, RequestError | DatabaseError> => {
    const principal = connection.principal
    switch (frame.type) {
      case "ping":
        return Effect.sync(() => connection.push(Frames.pong(frame.id)))
      case "create_thread":
        if (new Set([principal.userId, ...frame.members ?? []]).size > limits.membersPerThread) {
          return Effect.fail(RequestError.invalid(`a thread has at most ${limits.membersPerThread} members`))
        }
        return threads.create({
          createdBy: principal.userId,
          title: frame.title ?? null,
          members: frame.members ?? []
        }).pipe(Effect.map((threadId) => connection.push(Frames.ack(frame.id, { thread_id: threadId }))))
      case "join_thread":
        return Effect.zipRight(
          withinThreadLimit(connection, frame.thread_id),
          hub.join(connection, frame.thread_id, Option.fromNullable(frame.after_seq), (head) => {
            connection.push(Frames.ack(frame.id, { thread_id: frame.thread_id, head_seq: head }))
          })
        )
      case "leave_thread":
        return Effect.gen(function*() {
          if (!(yield* hub.leave(connection, frame.thread_id))) yield* access.read(principal, frame.thread_id)
          connection.push(Frames.ack(frame.id, { thread_id: frame.thread_id }))
        })
      case "send_message":
        if (frame.content.length > limits.messageChars) {
          return Effect.fail(RequestError.invalid(`invalid field "content": at most ${limits.messageChars} characters`))
        }
        return Effect.zipRight(
          ensureJoined(connection, frame.thread_id),
          supervisor.send(
            principal,
            frame.thread_id,
            frame.content,
            (ids) =>
              Effect.sync(() => connection.push(Frames.ack(frame.id, { message_id: ids.messageId, run_id: ids.runId })))
          )
        )
      case "refresh_token":
        return auth.verify(frame.token).pipe(
          Effect.mapError((error) => RequestError.forbidden(`token refused: ${error.reason}`)),
          Effect.flatMap((next) => {
            if (next.userId !== principal.userId) {
              return Effect.sync(() =>
                connection.close(CloseCode.PolicyViolation, "a refreshed token must be for the same user")
              )
            }
            return Effect.sync(() => {
              connection.principal = next
              connection.armExpiry(Date.now())
              connection.push(Frames.ack(frame.id, {}))
            })
          })
        )
      case "add_members":
      case "remove_members":
        return members.change(principal, frame.thread_id, {
          add: frame.type === "add_members" ? frame.user_ids : [],
          remove: frame.type === "remove_members" ? frame.user_ids : []
        }).pipe(Effect.map(() => connection.push(Frames.ack(frame.id, { thread_id: frame.thread_id }))))
      case "cancel_run":
        return supervisor.cancel(principal, frame.run_id).pipe(
          Effect.map(() => connection.push(Frames.ack(frame.id, { run_id: frame.run_id })))
        )
    }
  }

  /** Takes a token from the connection's bucket; false when the client sends faster than allowed. */
  const admit = (connection: Connection, now: number) => {
    const elapsed = (now - connection.refilledAt) / 1000
    connection.refilledAt = now
    connection.tokens = Math.min(limits.frameBurst, connection.tokens + elapsed * limits.framesPerSecond)
    if (connection.tokens >= 1) {
      connection.tokens -= 1
      connection.refusedInARow = 0
      return true
    }
    connection.refusedInARow++
    return false
  }

  const handle = (connection: Connection, raw: RawFrame): Effect.Effect<void> => {
    if (!admit(connection, Date.now())) {
      if (connection.refusedInARow > limits.floodThreshold) {
        return Effect.sync(() => connection.close(CloseCode.PolicyViolation, "flooding: too many frames"))
      }
      return Effect.sync(() =>
        connection.push(Frames.error(
          decodeFrame(raw.data).pipe(Either.match({ onLeft: (e) => e.ref, onRight: (f) => f.id })),
          ErrorCode.RateLimited,
          `at most ${limits.framesPerSecond} frames per second; slow down`
        ))
      )
    }
    if (raw.binary) {
      return Effect.sync(() =>
        connection.push(
          Frames.error(undefined, ErrorCode.InvalidMessage, "binary frames are not supported; send JSON text")
        )
      )
    }
    const decoded = decodeFrame(raw.data)
    if (Either.isLeft(decoded)) {
      return Effect.sync(() =>
        connection.push(Frames.error(decoded.left.ref, ErrorCode.InvalidMessage, decoded.left.message))
      )
    }
    const frame = decoded.right
    return dispatch(connection, frame).pipe(
      Effect.catchAllCause((cause) => {
        const failure = Cause.failureOption(cause)
        if (Option.isSome(failure) && failure.value._tag === "RequestError") {
          const { code, message } = failure.value
          return Effect.sync(() => connection.push(Frames.error(frame.id, code, message)))
        }
        if (Cause.isInterruptedOnly(cause)) return Effect.interrupt
        if (Option.isSome(failure) && failure.value._tag === "DatabaseError") {
          // A DatabaseError: the request is lost for now, not wrong; the monitor checks at once.
          return Effect.logWarning("the database failed a request").pipe(
            Effect.annotateLogs({ type: frame.type, reason: failure.value.reason }),
            Effect.zipRight(monitor.nudge),
            Effect.zipRight(Effect.sync(() =>
              connection.push(
                Frames.error(frame.id, ErrorCode.Unavailable, "the database is unavailable; try again shortly")
              )
            ))
          )
        }
        return Effect.logError("frame handling failed", cause).pipe(
          Effect.zipRight(
            Effect.sync(() => connection.push(Frames.error(frame.id, ErrorCode.Internal, "internal error")))
          )
        )
      }),
      Effect.withSpan("Session.frame", { attributes: { type: frame.type } })
    )
  }

  /**
   * Takes over an upgraded socket: registers its emitter in a scope of its own, sends `welcome`, and
   * handles its frames in order until it closes, when the scope is released. Synchronous, so the
   * socket's listeners are on before any frame can arrive; a fiber runs only while frames wait.
   */
  const open = (ws: WebSocket, principal: Principal) => {
    const scope = Effect.runSync(Scope.make())
    const connection = Effect.runSync(Scope.extend(hub.register(ws, principal), scope))
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

    ws.on("message", (data, binary) => {
      hub.counters.framesIn++
      if (inbox.length >= config.inboxCapacity) {
        return connection.close(CloseCode.PolicyViolation, "too many frames in flight")
      }
      inbox.push({ data: binary ? "" : data.toString(), binary })
      if (!processing) {
        processing = true
        current = runFork(annotated(drain))
      }
    })
    ws.on("close", (code) => {
      inbox.length = 0
      const fiber = current
      runFork(annotated(Effect.all([
        fiber === undefined ? Effect.void : Fiber.interrupt(fiber),
        Scope.close(scope, Exit.void),
        Effect.logDebug("connection closed").pipe(Effect.annotateLogs({ close_code: code }))
      ], { discard: true })))
    })

    connection.armExpiry(Date.now())
    connection.push(Frames.welcome({
      connectionId: connection.id,
      userId: principal.userId,
      heartbeatMs: Duration.toMillis(config.heartbeat),
      now: new Date(Effect.runSync(Clock.currentTimeMillis))
    }))
    return connection
  }

  return { open } as const
})

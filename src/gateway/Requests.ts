/**
 * Requests: the answer to one decoded client frame (docs/PROTOCOL.md
 * section 2). A failure becomes an `error` frame with the request's `ref`:
 * the client's mistake as its code, a lost database as `unavailable` (and
 * the monitor checks at once), anything unexpected as `internal`, logged.
 */
import { Cause, Effect, Option } from "effect"
import { Auth } from "../auth/Auth.ts"
import { AppConfig } from "../config/AppConfig.ts"
import { DatabaseMonitor } from "../database/Monitor.ts"
import { type DatabaseError, RequestError } from "../domain/Errors.ts"
import type { ClientFrame } from "../protocol/ClientFrames.ts"
import { CloseCode, ErrorCode } from "../protocol/Codes.ts"
import * as Frames from "../protocol/ServerFrames.ts"
import { Supervisor } from "../runs/Supervisor.ts"
import { Access } from "../threads/Access.ts"
import { Members } from "../threads/Members.ts"
import { Threads } from "../threads/Threads.ts"
import type { Connection } from "./Connection.ts"
import { Hub } from "./Hub.ts"

export const makeRequests = Effect.gen(function*() {
  const hub = yield* Hub
  const auth = yield* Auth
  const threads = yield* Threads
  const access = yield* Access
  const members = yield* Members
  const supervisor = yield* Supervisor
  const monitor = yield* DatabaseMonitor
  const { limits } = yield* AppConfig

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
        return Effect.sync(() => connection.reply(Frames.pong(frame.id)))
      case "create_thread":
        if (new Set([principal.userId, ...frame.members ?? []]).size > limits.membersPerThread) {
          return Effect.fail(RequestError.invalid(`a thread has at most ${limits.membersPerThread} members`))
        }
        return threads.create({
          createdBy: principal.userId,
          title: frame.title ?? null,
          members: frame.members ?? []
        }).pipe(Effect.map((threadId) => connection.reply(Frames.ack(frame.id, { thread_id: threadId }))))
      case "join_thread":
        return Effect.zipRight(
          withinThreadLimit(connection, frame.thread_id),
          hub.join(connection, frame.thread_id, Option.fromNullable(frame.after_seq), (head, online) => {
            connection.reply(Frames.ack(frame.id, { thread_id: frame.thread_id, head_seq: head, online }))
          })
        )
      case "leave_thread":
        return Effect.gen(function*() {
          if (!(yield* hub.leave(connection, frame.thread_id))) yield* access.read(principal, frame.thread_id)
          connection.reply(Frames.ack(frame.id, { thread_id: frame.thread_id }))
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
              Effect.sync(() =>
                connection.reply(
                  Frames.ack(
                    frame.id,
                    ids.runId === null
                      ? { message_id: ids.messageId, run_id: null, queued: true }
                      : { message_id: ids.messageId, run_id: ids.runId }
                  )
                )
              ),
            frame.on_busy
          )
        )
      case "refresh_token":
        return auth.verify(frame.token).pipe(
          Effect.mapError((error) =>
            error.unavailable === true
              ? new RequestError({ code: ErrorCode.Unavailable, message: `token not checked: ${error.reason}` })
              : RequestError.forbidden(`token refused: ${error.reason}`)
          ),
          Effect.flatMap((next) => {
            if (next.userId !== principal.userId) {
              return Effect.sync(() =>
                connection.close(CloseCode.PolicyViolation, "a refreshed token must be for the same user")
              )
            }
            return Effect.sync(() => {
              connection.refresh(next, Date.now())
              connection.reply(Frames.ack(frame.id, {}))
            })
          })
        )
      case "add_members":
      case "remove_members":
        return members.change(principal, frame.thread_id, {
          add: frame.type === "add_members" ? frame.user_ids : [],
          remove: frame.type === "remove_members" ? frame.user_ids : []
        }).pipe(Effect.map(() => connection.reply(Frames.ack(frame.id, { thread_id: frame.thread_id }))))
      case "cancel_run":
        return supervisor.cancel(principal, frame.run_id).pipe(
          Effect.map(() => connection.reply(Frames.ack(frame.id, { run_id: frame.run_id })))
        )
    }
  }

  /** Answers one request; never fails: every failure is an `error` frame. */
  const answer = (connection: Connection, frame: ClientFrame): Effect.Effect<void> =>
    dispatch(connection, frame).pipe(
      Effect.catchAllCause((cause) => {
        const failure = Cause.failureOption(cause)
        if (Option.isSome(failure) && failure.value._tag === "RequestError") {
          const { code, message } = failure.value
          return Effect.sync(() => connection.reply(Frames.error(frame.id, code, message)))
        }
        if (Cause.isInterruptedOnly(cause)) return Effect.interrupt
        if (Option.isSome(failure) && failure.value._tag === "DatabaseError") {
          // A DatabaseError: the request is lost for now, not wrong; the monitor checks at once.
          return Effect.logWarning("the database failed a request").pipe(
            Effect.annotateLogs({ type: frame.type, reason: failure.value.reason }),
            Effect.zipRight(monitor.nudge),
            Effect.zipRight(Effect.sync(() =>
              connection.reply(
                Frames.error(frame.id, ErrorCode.Unavailable, "the database is unavailable; try again shortly")
              )
            ))
          )
        }
        return Effect.logError("frame handling failed", cause).pipe(
          Effect.zipRight(
            Effect.sync(() => connection.reply(Frames.error(frame.id, ErrorCode.Internal, "internal error")))
          )
        )
      }),
      Effect.withSpan("Session.frame", { attributes: { type: frame.type } })
    )

  return { answer } as const
})

/**
 * Feeds: each connection's feed of each thread it joined, the delivery
 * guarantee of docs/PROTOCOL.md section 3 in one place. A join subscribes
 * first (live events are buffered), checks access and reads the head,
 * replays from the log, then drains the buffer, dropping what the replay
 * covered: no gap, no duplicate. A live event whose seq jumps is repaired
 * from the log. A `members_changed` removing the user is the last event his
 * feed of the thread delivers.
 */
import { Effect, FiberSet, Option, Runtime } from "effect"
import { AppConfig } from "../config/AppConfig.ts"
import type { DatabaseError } from "../domain/Errors.ts"
import type { BrokerMessage } from "../eventlog/Broker.ts"
import { EventLog, toLive } from "../eventlog/EventLog.ts"
import type { HubCounters } from "../metrics/Metrics.ts"
import { CloseCode } from "../protocol/Codes.ts"
import { Access } from "../threads/Access.ts"
import type { Connection, ThreadCursor } from "./Connection.ts"
import type { Presence } from "./Presence.ts"

const REPLAY_PAGE = 1000

export const makeFeeds = (
  counters: HubCounters,
  byThread: Map<string, Set<Connection>>,
  presence: Presence
) =>
  Effect.gen(function*() {
    const config = yield* AppConfig
    const eventLog = yield* EventLog
    const access = yield* Access
    const runFork = Runtime.runFork(yield* Effect.runtime<never>())
    // Catch-up fibers started from the delivery path; each ends with its connection or the hub.
    const repairs = yield* FiberSet.make<void, never>()

    const subscribe = (connection: Connection, threadId: string, cursor: ThreadCursor) => {
      connection.threads.set(threadId, cursor)
      let set = byThread.get(threadId)
      if (set === undefined) byThread.set(threadId, set = new Set())
      set.add(connection)
    }

    const unsubscribe = (connection: Connection, threadId: string) => {
      if (!connection.threads.delete(threadId)) return false
      const set = byThread.get(threadId)
      set?.delete(connection)
      if (set?.size === 0) byThread.delete(threadId)
      return true
    }

    const isCurrent = (connection: Connection, threadId: string, cursor: ThreadCursor) =>
      !connection.isClosing && connection.threads.get(threadId) === cursor

    /** After `message` reached the connection: true, and the join ended, when it removed the user. */
    const revokes = (connection: Connection, threadId: string, message: BrokerMessage) => {
      if (message.revoke === undefined || !message.revoke.includes(connection.userId)) return false
      unsubscribe(connection, threadId)
      return true
    }

    /** Queues stored events in (lastSeq, upTo] from the log, waiting for room in the outbox. */
    const replay = (connection: Connection, threadId: string, cursor: ThreadCursor, upTo: number) =>
      Effect.gen(function*() {
        while (cursor.lastSeq < upTo && isCurrent(connection, threadId, cursor)) {
          const limit = Math.min(REPLAY_PAGE, upTo - cursor.lastSeq)
          const events = yield* eventLog.read(threadId, cursor.lastSeq, limit)
          if (events.length === 0) break
          for (const event of events) {
            if (event.seq !== cursor.lastSeq + 1 || !isCurrent(connection, threadId, cursor)) break
            const message = toLive(event)
            yield* connection.offer(message.payload)
            cursor.lastSeq = event.seq
            if (revokes(connection, threadId, message)) return
          }
        }
      })

    /**
     * Moves a buffering cursor to live: sends what was buffered in order, fetching from the log any seq
     * that did not arrive (events published out of order by different writers).
     */
    const settle = (
      connection: Connection,
      threadId: string,
      cursor: ThreadCursor
    ): Effect.Effect<void, DatabaseError> =>
      Effect.gen(function*() {
        while (isCurrent(connection, threadId, cursor)) {
          const pending = (cursor.pending ?? []).sort((a, b) => a.seq - b.seq)
          cursor.pending = []
          let gap: number | undefined
          for (let i = 0; i < pending.length; i++) {
            const message = pending[i]!
            if (message.seq <= cursor.lastSeq) continue
            if (message.seq === cursor.lastSeq + 1) {
              // Waits for room like the replay before it: the replay may have left the outbox full of a
              // client that reads, and a push would close him 1013 for one event come meanwhile.
              yield* connection.offer(message.payload)
              if (!isCurrent(connection, threadId, cursor)) return
              cursor.lastSeq = message.seq
              if (revokes(connection, threadId, message)) return
            } else {
              gap = message.seq
              cursor.pending.push(...pending.slice(i))
              break
            }
          }
          if (gap === undefined) {
            // Events that came while it waited for room are settled in the next round.
            if (cursor.pending.length > 0) continue
            cursor.pending = null
            return
          }
          const before = cursor.lastSeq
          yield* replay(connection, threadId, cursor, gap - 1)
          // A seq that is not in the log cannot be waited for; skip it rather than stall the thread.
          if (cursor.lastSeq === before) {
            yield* Effect.logWarning("event missing from the log; skipping").pipe(
              Effect.annotateLogs({ thread_id: threadId, seq: before + 1 })
            )
            cursor.lastSeq = gap - 1
          }
        }
      })

    const deliver = (message: BrokerMessage) => {
      const set = byThread.get(message.threadId)
      if (set === undefined) return
      // Encoded once, the same bytes go to every connection.
      let bytes: Buffer | undefined
      for (const connection of set) {
        const cursor = connection.threads.get(message.threadId)
        if (cursor === undefined) continue
        if (cursor.pending !== null) {
          if (cursor.pending.length >= config.catchUpBuffer) {
            counters.slowConsumerCloses++
            counters.eventsDropped++
            connection.close(CloseCode.TryAgainLater, "too far behind; reconnect and replay with after_seq")
          } else {
            cursor.pending.push(message)
          }
        } else if (message.seq === cursor.lastSeq + 1) {
          if (connection.push(bytes ??= Buffer.from(message.payload))) {
            cursor.lastSeq = message.seq
            counters.eventsDelivered++
            revokes(connection, message.threadId, message)
          }
        } else if (message.seq > cursor.lastSeq + 1) {
          cursor.pending = [message]
          runFork(FiberSet.run(repairs, settle(connection, message.threadId, cursor).pipe(Effect.ignoreLogged)))
        }
      }
    }

    const join = (
      connection: Connection,
      threadId: string,
      afterSeq: Option.Option<number>,
      onHead: (headSeq: number, online: ReadonlyArray<string>) => void
    ) => {
      const cursor: ThreadCursor = { lastSeq: 0, pending: [] }
      return Effect.gen(function*() {
        // Subscribed before the check: an event committed after it (a removal of this user, say) arrives
        // live and is buffered; one committed before it is covered by the head the check returns.
        subscribe(connection, threadId, cursor)
        const head = yield* access.read(connection.principal, threadId)
        yield* presence.join(threadId, connection.userId)
        onHead(head, presence.acknowledge(connection, threadId))
        cursor.lastSeq = Option.match(afterSeq, { onNone: () => head, onSome: (after) => Math.min(after, head) })
        yield* replay(connection, threadId, cursor, head)
        yield* settle(connection, threadId, cursor)
        return head
      }).pipe(
        Effect.tapErrorCause(() =>
          Effect.sync(() => isCurrent(connection, threadId, cursor) && unsubscribe(connection, threadId))
        ),
        Effect.withSpan("Hub.join", { attributes: { thread_id: threadId } })
      )
    }

    /**
     * After the broker may have lost messages: each joined thread whose head in the log is past what a
     * connection has is caught up from the log, as a join with `after_seq` would, live events buffered.
     */
    const resync = Effect.suspend(() =>
      Effect.forEach([...byThread.keys()], (threadId) =>
        Effect.flatMap(eventLog.head(threadId), (head) =>
          Effect.sync(() => {
            if (Option.isNone(head)) {
              return
            }
            for (const connection of byThread.get(threadId) ?? []) {
              const cursor = connection.threads.get(threadId)
              if (cursor === undefined || cursor.pending !== null || cursor.lastSeq >= head.value) {
                continue
              }
              cursor.pending = []
              runFork(FiberSet.run(
                repairs,
                replay(connection, threadId, cursor, head.value).pipe(
                  Effect.zipRight(settle(connection, threadId, cursor)),
                  Effect.ignoreLogged
                )
              ))
            }
          })).pipe(Effect.ignoreLogged), { discard: true })
    )

    return { deliver, join, resync, unsubscribe } as const
  })

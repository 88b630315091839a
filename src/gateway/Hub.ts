/**
 * Hub: the node's registry of connections and the fan-out of
 * stored events to them. One fiber takes the event log's live events and
 * offers each to the outboxes of the connections that joined its thread;
 * joins replay from the event log and switch to live with no gap and no
 * duplicate (buffer live events, replay, drop what the replay covered). A
 * `members_changed` that removes a user is his connections' last event of
 * the thread: their join of it ends there.
 */
import { Context, Duration, Effect, FiberSet, Layer, Option, Queue, Runtime, Schedule, type Scope } from "effect"
import type { Principal } from "../auth/Auth.ts"
import { AppConfig } from "../config/AppConfig.ts"
import type { DatabaseError, RequestError } from "../domain/Errors.ts"
import { type ComponentHealth, up } from "../domain/Health.ts"
import type { BrokerMessage } from "../eventlog/Broker.ts"
import { EventLog, toLive } from "../eventlog/EventLog.ts"
import { HubCounters } from "../metrics/Metrics.ts"
import { CloseCode } from "../protocol/Codes.ts"
import { Access } from "../threads/Access.ts"
import { Connection, type ThreadCursor } from "./Connection.ts"
import type { ClientSocket } from "./Socket.ts"

const REPLAY_PAGE = 1000

export interface HubStats {
  readonly connections: number
  readonly threads: number
  readonly subscriptions: number
  readonly users: number
}

export class Hub extends Context.Tag("agent-chat/Hub")<Hub, {
  /** Registers a connection for the life of the scope: its outbox, heartbeat and joins go with it. */
  readonly register: (socket: ClientSocket, principal: Principal) => Effect.Effect<Connection, never, Scope.Scope>
  /**
   * Joins a thread if Access lets the connection's user read it: `onHead` runs (to queue the ack) once
   * the head is known, then stored events after `afterSeq` are queued, then live ones.
   */
  readonly join: (
    connection: Connection,
    threadId: string,
    afterSeq: Option.Option<number>,
    onHead: (headSeq: number) => void
  ) => Effect.Effect<number, DatabaseError | RequestError>
  readonly leave: (connection: Connection, threadId: string) => Effect.Effect<boolean>
  /** Connections the user holds on this node. */
  readonly connectionsOf: (userId: string) => number
  /** Closes every connection once its outbox has been written, waiting up to `timeout` for them to go. */
  readonly closeAll: (code: CloseCode, reason: string, timeout: Duration.Duration) => Effect.Effect<void>
  readonly stats: Effect.Effect<HubStats>
  /** Hot-path counts, read by `/metrics`. */
  readonly counters: HubCounters
  readonly health: Effect.Effect<ComponentHealth>
}>() {}

const waitUntil = (done: () => boolean) =>
  Effect.sync(done).pipe(Effect.repeat({ until: (ok) => ok, schedule: Schedule.spaced(Duration.millis(10)) }))

const make = Effect.gen(function*() {
  const config = yield* AppConfig
  const eventLog = yield* EventLog
  const access = yield* Access
  const runtime = yield* Effect.runtime<never>()
  const runFork = Runtime.runFork(runtime)
  const connections = new Set<Connection>()
  const perUser = new Map<string, number>()
  const counters = new HubCounters()
  const byThread = new Map<string, Set<Connection>>()
  // Catch-up fibers started from the delivery path; each ends with its connection.
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
  const settle = (connection: Connection, threadId: string, cursor: ThreadCursor): Effect.Effect<void, DatabaseError> =>
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
        if (cursor.pending.length >= config.outboxCapacity) {
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

  const subscription = yield* eventLog.live
  // takeBetween waits for the first message; takeAll would return empty chunks and spin the loop.
  yield* Queue.takeBetween(subscription, 1, Number.MAX_SAFE_INTEGER).pipe(
    Effect.tap((messages) => {
      for (const message of messages) deliver(message)
    }),
    Effect.forever,
    Effect.forkScoped
  )

  const heartbeat = Effect.sync(() => {
    for (const connection of connections) connection.heartbeat()
  })
  yield* heartbeat.pipe(
    Effect.repeat(Schedule.spaced(config.heartbeat)),
    Effect.delay(config.heartbeat),
    Effect.forkScoped
  )

  const connectionLimits = { outboxCapacity: config.outboxCapacity, ...config.limits }

  const register = (socket: ClientSocket, principal: Principal) =>
    Effect.acquireRelease(
      Effect.sync(() => {
        const connection = new Connection(socket, principal, connectionLimits, counters)
        counters.connects++
        connections.add(connection)
        perUser.set(principal.userId, (perUser.get(principal.userId) ?? 0) + 1)
        return connection
      }),
      (connection) =>
        Effect.sync(() => {
          connection.closed()
          connections.delete(connection)
          const held = (perUser.get(connection.userId) ?? 1) - 1
          if (held === 0) perUser.delete(connection.userId)
          else perUser.set(connection.userId, held)
          for (const threadId of [...connection.threads.keys()]) unsubscribe(connection, threadId)
        })
    )

  const join = (
    connection: Connection,
    threadId: string,
    afterSeq: Option.Option<number>,
    onHead: (headSeq: number) => void
  ) => {
    const cursor: ThreadCursor = { lastSeq: 0, pending: [] }
    return Effect.gen(function*() {
      // Subscribed before the check: an event committed after it (a removal of this user, say) arrives
      // live and is buffered; one committed before it is covered by the head the check returns.
      subscribe(connection, threadId, cursor)
      const head = yield* access.read(connection.principal, threadId)
      onHead(head)
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

  const stats = Effect.sync((): HubStats => {
    let subscriptions = 0
    for (const set of byThread.values()) subscriptions += set.size
    return { connections: connections.size, threads: byThread.size, subscriptions, users: perUser.size }
  })

  return Hub.of({
    register,
    join,
    leave: (connection, threadId) => Effect.sync(() => unsubscribe(connection, threadId)),
    connectionsOf: (userId) => perUser.get(userId) ?? 0,
    closeAll: (code, reason, timeout) =>
      // Events stored before now (a run's terminal event, say) come back through the broker first.
      waitUntil(() => subscription.unsafeSize().pipe(Option.getOrElse(() => 0)) === 0).pipe(
        Effect.zipRight(Effect.sync(() => {
          for (const connection of connections) connection.closeWhenFlushed(code, reason)
        })),
        Effect.zipRight(waitUntil(() => connections.size === 0)),
        // Finalizers run uninterruptibly: the wait must opt in, or the timeout could never stop it.
        Effect.interruptible,
        Effect.timeout(timeout),
        Effect.ignore
      ),
    counters,
    stats,
    health: Effect.map(stats, (s) => up({ connections: s.connections, threads: s.threads }))
  })
})

export const HubLive: Layer.Layer<Hub, never, AppConfig | EventLog | Access> = Layer.scoped(
  Hub,
  make
)

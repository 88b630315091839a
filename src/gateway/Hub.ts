/**
 * Hub: the node's registry of connections and the fan-out of stored events
 * to them. One fiber takes the event log's live events and hands each to
 * the feeds (Feeds.ts) of the connections that joined its thread; it also
 * beats every connection's heartbeat, counts connections per user, and
 * closes them all on shutdown once their outboxes are written.
 */
import { Context, Duration, Effect, Layer, Option, Queue, Runtime, Schedule, type Scope } from "effect"
import type { Principal } from "../auth/Auth.ts"
import { AppConfig } from "../config/AppConfig.ts"
import type { DatabaseError, RequestError } from "../domain/Errors.ts"
import { type ComponentHealth, up } from "../domain/Health.ts"
import { Broker } from "../eventlog/Broker.ts"
import { EventLog } from "../eventlog/EventLog.ts"
import { HubCounters } from "../metrics/Metrics.ts"
import { CloseCode } from "../protocol/Codes.ts"
import type { Access } from "../threads/Access.ts"
import { Connection } from "./Connection.ts"
import { makeFeeds } from "./Feeds.ts"
import { makePresence } from "./Presence.ts"
import type { ClientSocket } from "./Socket.ts"

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
   * the head and the online members are known, then stored events after `afterSeq` are queued, then
   * live ones; `presence` frames follow whenever the online members change.
   */
  readonly join: (
    connection: Connection,
    threadId: string,
    afterSeq: Option.Option<number>,
    onHead: (headSeq: number, online: ReadonlyArray<string>) => void
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
  const broker = yield* Broker
  const connections = new Set<Connection>()
  const counters = new HubCounters()
  const byThread = new Map<string, Set<Connection>>()

  const presence = yield* makePresence(byThread)
  const feeds = yield* makeFeeds(counters, byThread, presence)
  const { deliver, resync, unsubscribe } = feeds
  const runFork = Runtime.runFork(yield* Effect.runtime<never>())

  const subscription = yield* eventLog.live
  // takeBetween waits for the first message; takeAll would return empty chunks and spin the loop.
  yield* Queue.takeBetween(subscription, 1, Number.MAX_SAFE_INTEGER).pipe(
    Effect.tap((messages) => {
      for (const message of messages) {
        if (message.resync === true) runFork(resync)
        else if (message.presence !== undefined) presence.announced(message.presence)
        else {
          deliver(message)
          if (message.membersChanged === true) presence.membersChanged(message.threadId)
        }
      }
    }),
    Effect.forever,
    Effect.forkScoped
  )

  // While the broker is lost, other nodes' events reach this one through the log: every joined thread
  // is checked against its head at each tick, until the broker is back (and resyncs once more).
  yield* broker.health.pipe(
    Effect.flatMap((health) => health.status === "down" ? resync : Effect.void),
    Effect.repeat(Schedule.spaced(config.brokerPoll)),
    Effect.delay(config.brokerPoll),
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
        presence.connected(principal.userId)
        return connection
      }),
      (connection) =>
        Effect.sync(() => {
          connection.closed()
          connections.delete(connection)
          presence.disconnected(connection.userId)
          for (const threadId of [...connection.threads.keys()]) unsubscribe(connection, threadId)
        })
    )

  const stats = Effect.sync((): HubStats => {
    let subscriptions = 0
    for (const set of byThread.values()) subscriptions += set.size
    return { connections: connections.size, threads: byThread.size, subscriptions, users: presence.users() }
  })

  return Hub.of({
    register,
    join: feeds.join,
    leave: (connection, threadId) => Effect.sync(() => unsubscribe(connection, threadId)),
    connectionsOf: presence.connectionsOf,
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

export const HubLive: Layer.Layer<Hub, never, AppConfig | EventLog | Access | Broker> = Layer.scoped(
  Hub,
  make
)

/**
 * Broker: cross-node fan-out of stored events, published by the EventLog
 * once they are committed. Every node's hub subscribes once and delivers to
 * its own connections; the payload is the serialised envelope, so it is
 * encoded once for every node and socket.
 */
import { Context, Data, Effect, Layer, PubSub, type Queue, type Scope } from "effect"
import { type ComponentHealth, up } from "../domain/Health.ts"

export interface BrokerMessage {
  readonly threadId: string
  readonly seq: number
  /** The event envelope, already JSON. */
  readonly payload: string
  /** Users who stop receiving the thread after this event (a `members_changed` that removed them). */
  readonly revoke?: ReadonlyArray<string>
  /** The run this terminal event ended: its owner, on whatever node, stops it at once. */
  readonly ended?: string
  /**
   * Not an event: the broker may have lost messages (it reconnected), so every joined thread is to be
   * checked against its head in the log. `threadId` and `payload` are empty.
   */
  readonly resync?: true
  /** A `members_changed`: who is online in the thread is to be worked out again. */
  readonly membersChanged?: true
  /** Not an event: these users' presence changed on some node (a wake-up; `Presence.online` says how). */
  readonly presence?: ReadonlyArray<string>
}

/**
 * Who is online across the nodes: each node says which users hold a connection on it, renewed within
 * the TTL, so a crashed node's users drop out when it runs out. The store is the broker's: Redis keys
 * with a TTL, a PostgreSQL table with heartbeats, or this process's memory.
 */
export interface PresenceStore {
  /** This node holds `held` (renewed until the TTL from now) and no longer holds `released`. */
  readonly hold: (held: ReadonlyArray<string>, released: ReadonlyArray<string>) => Effect.Effect<void, PresenceError>
  /** Those of `users` some node holds now. */
  readonly online: (users: ReadonlyArray<string>) => Effect.Effect<ReadonlySet<string>, PresenceError>
  /** Tells every node, this one first, that these users' presence changed (a `presence` message). */
  readonly announce: (users: ReadonlyArray<string>) => Effect.Effect<void>
}

export class PresenceError extends Data.TaggedError("PresenceError")<{ readonly reason: string }> {}

export class Broker extends Context.Tag("agent-chat/Broker")<Broker, {
  readonly publish: (messages: ReadonlyArray<BrokerMessage>) => Effect.Effect<void>
  /** Every message published from now on, on any node, until the scope closes. */
  readonly subscribe: Effect.Effect<Queue.Dequeue<BrokerMessage>, never, Scope.Scope>
  readonly health: Effect.Effect<ComponentHealth>
  readonly presence: PresenceStore
}>() {}

/** A message that is no event, on no thread. */
export const signal = (fields: Pick<BrokerMessage, "resync" | "presence">): BrokerMessage => ({
  threadId: "",
  seq: 0,
  payload: "",
  ...fields
})

/** A single node's broker: an in-memory PubSub. */
export const BrokerInProcess: Layer.Layer<Broker> = Layer.scoped(
  Broker,
  Effect.gen(function*() {
    const pubsub = yield* Effect.acquireRelease(PubSub.unbounded<BrokerMessage>(), PubSub.shutdown)
    const held = new Set<string>()
    return Broker.of({
      publish: (messages) => PubSub.publishAll(pubsub, messages).pipe(Effect.asVoid),
      subscribe: PubSub.subscribe(pubsub),
      health: Effect.succeed(up({ kind: "in-process" })),
      presence: {
        hold: (users, released) =>
          Effect.sync(() => {
            for (const user of users) held.add(user)
            for (const user of released) held.delete(user)
          }),
        online: (users) => Effect.sync(() => new Set(users.filter((user) => held.has(user)))),
        announce: (users) => PubSub.publish(pubsub, signal({ presence: users }))
      }
    })
  })
)

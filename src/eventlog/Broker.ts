/**
 * Broker: cross-node fan-out of stored events, published by the EventLog
 * once they are committed. Every node's hub subscribes once and delivers to
 * its own connections; the payload is the serialised envelope, so it is
 * encoded once for every node and socket.
 */
import { Context, Effect, Layer, PubSub, type Queue, type Scope } from "effect"
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
}

export class Broker extends Context.Tag("agent-chat/Broker")<Broker, {
  readonly publish: (messages: ReadonlyArray<BrokerMessage>) => Effect.Effect<void>
  /** Every message published from now on, on any node, until the scope closes. */
  readonly subscribe: Effect.Effect<Queue.Dequeue<BrokerMessage>, never, Scope.Scope>
  readonly health: Effect.Effect<ComponentHealth>
}>() {}

/** A single node's broker: an in-memory PubSub. */
export const BrokerInProcess: Layer.Layer<Broker> = Layer.scoped(
  Broker,
  Effect.gen(function*() {
    const pubsub = yield* Effect.acquireRelease(PubSub.unbounded<BrokerMessage>(), PubSub.shutdown)
    return Broker.of({
      publish: (messages) => PubSub.publishAll(pubsub, messages).pipe(Effect.asVoid),
      subscribe: PubSub.subscribe(pubsub),
      health: Effect.succeed(up({ kind: "in-process" }))
    })
  })
)

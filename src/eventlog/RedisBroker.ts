/**
 * The Redis broker (`BROKER=redis`): each stored event is published, once
 * its transaction has committed, on one of a fixed set of channels chosen
 * by its thread, and every node subscribes to the set and hands what it
 * receives to its own hub. A node's own events are handed to its hub at
 * once, not through Redis, so a node whose Redis is lost still serves its
 * own connections. The database stays the source of truth: a hub that sees
 * a thread's seq jump fills the gap from the log, so a message Redis lost
 * costs a read, never a gap or a duplicate.
 *
 * Startup: both connections (one publishes, one subscribes, as Redis
 * requires) must answer within the startup Schedule, or the process stops
 * with a StartupError naming Redis and its address. At runtime a lost
 * connection turns the broker `down` on `/health/ready` until ioredis has
 * reconnected it.
 */
import { Duration, Effect, Layer, PubSub, Redacted, Runtime } from "effect"
import { Redis } from "ioredis"
import { randomUUID } from "node:crypto"
import { AppConfig, type RetryPolicy, startupRetrySchedule } from "../config/AppConfig.ts"
import { StartupError } from "../domain/Errors.ts"
import { down, up } from "../domain/Health.ts"
import { Broker, type BrokerMessage, signal } from "./Broker.ts"
import { PRESENCE_CHANNEL, type PresenceAnnouncement, redisPresence } from "./PresenceStores.ts"

/** Channels events are spread over, by thread: one subscription pattern covers them all. */
const SHARDS = 16
const PREFIX = "agentchat:events:"

const shardOf = (threadId: string) => {
  let hash = 0
  for (let i = 0; i < threadId.length; i++) hash = (hash * 31 + threadId.charCodeAt(i)) | 0
  return Math.abs(hash) % SHARDS
}

interface Envelope {
  /** The node that published it, which delivered it already. */
  readonly node: string
  readonly messages: ReadonlyArray<BrokerMessage>
}

/** host:port of a Redis URL, without its password. */
const redisAddress = (url: string) => {
  try {
    const parsed = new URL(url)
    return `${parsed.hostname}:${parsed.port || "6379"}`
  } catch {
    return "an invalid REDIS_URL"
  }
}

export interface RedisBrokerOptions {
  readonly url: Redacted.Redacted
  readonly retry: RetryPolicy
}

export const BrokerRedis = (options: RedisBrokerOptions): Layer.Layer<Broker, StartupError, AppConfig> =>
  Layer.scoped(
    Broker,
    Effect.gen(function*() {
      const { presenceTtl } = yield* AppConfig
      const url = Redacted.value(options.url)
      const address = redisAddress(url)
      const node = randomUUID()
      const connect = (name: string) =>
        Effect.acquireRelease(
          Effect.sync(() =>
            new Redis(url, {
              connectionName: `agent-chat-${name}`,
              lazyConnect: true,
              // Commands fail at once while the connection is down, instead of queueing without bound.
              enableOfflineQueue: false,
              maxRetriesPerRequest: 1,
              retryStrategy: (attempt) => Math.min(50 * 2 ** attempt, 2000)
            })
          ),
          (client) => Effect.promise(() => client.quit().catch(() => client.disconnect()))
        )
      const publisher = yield* connect("publisher")
      const subscriber = yield* connect("subscriber")
      // ioredis logs an unhandled 'error' event to the console; the health and the logs say it instead.
      const runtime = yield* Effect.runtime<never>()
      const runFork = Runtime.runFork(runtime)
      for (const client of [publisher, subscriber]) {
        client.on("error", () => undefined)
      }

      const reach = (client: Redis) =>
        Effect.tryPromise({
          try: () => client.status === "ready" ? Promise.resolve() : client.connect(),
          catch: (cause) => cause
        }).pipe(
          Effect.timeout(Duration.seconds(5)),
          Effect.retry(startupRetrySchedule(options.retry)),
          Effect.mapError((cause) =>
            new StartupError({
              component: "broker",
              reason: `Redis unreachable at ${address} after ${options.retry.attempts} attempts`,
              cause
            })
          )
        )
      yield* reach(publisher)
      yield* reach(subscriber)

      const local = yield* Effect.acquireRelease(PubSub.unbounded<BrokerMessage>(), PubSub.shutdown)
      subscriber.on("pmessageBuffer", (_pattern: Buffer, _channel: Buffer, raw: Buffer) => {
        let envelope: Envelope
        try {
          envelope = JSON.parse(raw.toString("utf8"))
        } catch {
          return
        }
        if (envelope.node === node) return
        runFork(PubSub.publishAll(local, envelope.messages))
      })
      subscriber.on("messageBuffer", (channel: Buffer, raw: Buffer) => {
        if (channel.toString() !== PRESENCE_CHANNEL) return
        let announcement: PresenceAnnouncement
        try {
          announcement = JSON.parse(raw.toString("utf8"))
        } catch {
          return
        }
        if (announcement.node !== node) runFork(PubSub.publish(local, signal({ presence: announcement.users })))
      })
      yield* Effect.tryPromise({
        try: () => Promise.all([subscriber.psubscribe(`${PREFIX}*`), subscriber.subscribe(PRESENCE_CHANNEL)]),
        catch: (cause) =>
          new StartupError({ component: "broker", reason: `Redis at ${address} refused SUBSCRIBE`, cause })
      })
      // Messages published while the subscription was down are lost: every hub checks its joined threads.
      subscriber.on("ready", () => {
        runFork(Effect.zipRight(
          Effect.logInfo("the Redis broker reconnected").pipe(Effect.annotateLogs({ component: "broker", address })),
          PubSub.publish(local, signal({ resync: true }))
        ))
      })

      const publish = (messages: ReadonlyArray<BrokerMessage>) =>
        Effect.gen(function*() {
          if (messages.length === 0) return
          // This node's connections first, whatever Redis does.
          yield* PubSub.publishAll(local, messages)
          const byShard = new Map<number, Array<BrokerMessage>>()
          for (const message of messages) {
            const shard = shardOf(message.threadId)
            const list = byShard.get(shard)
            if (list === undefined) byShard.set(shard, [message])
            else list.push(message)
          }
          yield* Effect.tryPromise(() => {
            const pipeline = publisher.pipeline()
            for (const [shard, list] of byShard) {
              pipeline.publish(`${PREFIX}${shard}`, JSON.stringify({ node, messages: list } satisfies Envelope))
            }
            return pipeline.exec()
          }).pipe(
            Effect.catchAll((cause) =>
              // The other nodes fill the gap from the log at the thread's next event.
              Effect.logWarning("an event could not be published to Redis").pipe(
                Effect.annotateLogs({ component: "broker", address, cause: String(cause) })
              )
            )
          )
        })

      return Broker.of({
        publish,
        subscribe: PubSub.subscribe(local),
        health: Effect.sync(() =>
          publisher.status === "ready" && subscriber.status === "ready"
            ? up({ kind: "redis", address })
            : down(`Redis at ${address} is ${publisher.status === "ready" ? subscriber.status : publisher.status}`)
        ),
        presence: redisPresence({ publisher, node, ttl: presenceTtl, local })
      })
    })
  )

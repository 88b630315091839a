/**
 * The presence stores of the fleet's brokers (Broker.ts, PresenceStore):
 * Redis keeps a sorted set per user whose members are the nodes holding
 * him, scored by when each hold runs out; PostgreSQL a `presence` row per
 * user and node with its last renewal. Either way a node that stops
 * renewing (it crashed) stops counting within the TTL. Announcements go
 * out on the broker's own channel, this node's hub first.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import { Duration, Effect, PubSub } from "effect"
import type { Redis } from "ioredis"
import { type BrokerMessage, PresenceError, type PresenceStore, signal } from "./Broker.ts"

/** The Redis channel presence changes are announced on. */
export const PRESENCE_CHANNEL = "agentchat:presence"
const key = (user: string) => `agentchat:presence:${user}`

export interface PresenceAnnouncement {
  readonly node: string
  readonly users: ReadonlyArray<string>
}

const failed = (what: string) => (cause: unknown) =>
  new PresenceError({ reason: `${what}: ${cause instanceof Error ? cause.message : String(cause)}` })

/** Runs a pipeline; fails if any of its commands did. */
const exec = (build: () => ReturnType<Redis["pipeline"]>, what: string) =>
  Effect.tryPromise({
    try: async () => {
      const results = (await build().exec()) ?? []
      const error = results.find(([e]) => e !== null)?.[0]
      if (error) throw error
      return results.map(([, value]) => value)
    },
    catch: failed(what)
  })

export const redisPresence = (options: {
  readonly publisher: Redis
  readonly node: string
  readonly ttl: Duration.Duration
  readonly local: PubSub.PubSub<BrokerMessage>
}): PresenceStore => {
  const { local, node, publisher } = options
  const ttl = Duration.toMillis(options.ttl)
  return {
    hold: (held, released) =>
      held.length + released.length === 0 ? Effect.void : exec(() => {
        const pipeline = publisher.pipeline()
        const until = Date.now() + ttl
        for (const user of held) {
          pipeline.zadd(key(user), until, node)
          // A user nobody renews is forgotten altogether.
          pipeline.pexpire(key(user), 2 * ttl)
        }
        for (const user of released) pipeline.zrem(key(user), node)
        return pipeline
      }, "Redis refused the presence renewal").pipe(Effect.asVoid),
    online: (users) =>
      users.length === 0 ? Effect.succeed(new Set()) : exec(() => {
        const pipeline = publisher.pipeline()
        const now = Date.now()
        for (const user of users) pipeline.zrangebyscore(key(user), now, "+inf", "LIMIT", 0, 1)
        return pipeline
      }, "Redis could not say who is online").pipe(
        Effect.map((results) => new Set(users.filter((_, i) => (results[i] as Array<string>).length > 0)))
      ),
    announce: (users) =>
      Effect.zipRight(
        PubSub.publish(local, signal({ presence: users })),
        Effect.tryPromise(() =>
          publisher.publish(PRESENCE_CHANNEL, JSON.stringify({ node, users } satisfies PresenceAnnouncement))
        ).pipe(Effect.catchAll(() => Effect.void))
      )
  }
}

/** Users per notification: NOTIFY payloads are limited to 8,000 bytes. */
const NOTIFY_USERS = 40

export const postgresPresence = (options: {
  readonly sql: SqlClient.SqlClient
  readonly node: string
  readonly ttl: Duration.Duration
  readonly local: PubSub.PubSub<BrokerMessage>
  /** Sends the announcement to the other nodes. */
  readonly notify: (users: ReadonlyArray<string>) => Effect.Effect<void>
}): PresenceStore => {
  const { local, node, sql } = options
  const ttlSeconds = Duration.toMillis(options.ttl) / 1000
  return {
    hold: (held, released) =>
      Effect.gen(function*() {
        if (held.length > 0) {
          yield* sql`INSERT INTO presence ${sql.insert(held.map((user_id) => ({ user_id, node })))}
            ON CONFLICT (user_id, node) DO UPDATE SET renewed_at = now()`
          // Rows of nodes long gone.
          yield* sql`DELETE FROM presence WHERE renewed_at < now() - make_interval(secs => ${ttlSeconds * 6})`
        }
        if (released.length > 0) {
          yield* sql`DELETE FROM presence WHERE node = ${node} AND user_id IN ${sql.in(released)}`
        }
      }).pipe(Effect.mapError(failed("the presence table could not be renewed"))),
    online: (users) =>
      users.length === 0 ? Effect.succeed(new Set()) : sql<{ user_id: string }>`
        SELECT DISTINCT user_id FROM presence
        WHERE user_id IN ${sql.in(users)} AND renewed_at > now() - make_interval(secs => ${ttlSeconds})`.pipe(
        Effect.map((rows) => new Set(rows.map((row) => row.user_id))),
        Effect.mapError(failed("the presence table could not be read"))
      ),
    announce: (users) =>
      Effect.zipRight(
        PubSub.publish(local, signal({ presence: users })),
        Effect.forEach(
          Array.from({ length: Math.ceil(users.length / NOTIFY_USERS) }, (_, i) =>
            users.slice(i * NOTIFY_USERS, (i + 1) * NOTIFY_USERS)),
          options.notify,
          { discard: true }
        )
      )
  }
}

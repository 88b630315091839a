/**
 * The PostgreSQL broker (`BROKER=postgres`), for fleets without Redis, as
 * Centrifugo does it: after each commit a node sends `pg_notify` with the
 * thread and the seqs it stored (one per thread, all in one statement), a
 * wake-up only; every node LISTENs on its own connection and reads the new
 * events from the log by `seq` before handing them to its hub. A node's own events reach its hub at once.
 * PGlite cannot LISTEN across connections, so this broker needs a real
 * PostgreSQL (DATABASE_URL) and says so at startup.
 *
 * @effect/sql-pg's `listen` is not used: 0.53's is broken. The LISTEN
 * connection is a plain `pg` client, reconnected on a Schedule when lost;
 * after it returns, every hub checks its joined threads against the log.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import { Duration, Effect, Layer, Option, PubSub, Redacted, Runtime, Schedule } from "effect"
import { randomUUID } from "node:crypto"
import pg from "pg"
import { AppConfig, startupRetrySchedule } from "../config/AppConfig.ts"
import { StartupError } from "../domain/Errors.ts"
import { down, up } from "../domain/Health.ts"
import { Broker, type BrokerMessage, signal } from "./Broker.ts"
import { toLive } from "./EventLog.ts"
import { EventStore } from "./EventStore.ts"
import { postgresPresence } from "./PresenceStores.ts"

export const CHANNEL = "agentchat_events"

interface Wake {
  /** The node that stored them. */
  readonly n: string
  readonly t: string
  /** First and last seq stored. */
  readonly f: number
  readonly l: number
}

/** A notification that these users' presence changed. */
interface PresenceWake {
  readonly n: string
  readonly p: ReadonlyArray<string>
}

/** host:port/database of a PostgreSQL URL, without its credentials. */
const addressOf = (url: string) => {
  try {
    const parsed = new URL(url)
    return `${parsed.hostname}:${parsed.port || "5432"}${parsed.pathname}`
  } catch {
    return "an invalid DATABASE_URL"
  }
}

/** Threads whose last delivered seq a node remembers; past it, the oldest are forgotten. */
const REMEMBERED = 10_000

/** The broker on the database at `databaseUrl` (DATABASE_URL), which must be a real PostgreSQL. */
export const BrokerPostgres = (
  databaseUrl: Option.Option<Redacted.Redacted>
): Layer.Layer<Broker, StartupError, AppConfig | EventStore | SqlClient.SqlClient> =>
  Layer.scoped(
    Broker,
    Effect.gen(function*() {
      const config = yield* AppConfig
      const store = yield* EventStore
      const sql = yield* SqlClient.SqlClient
      if (Option.isNone(databaseUrl)) {
        return yield* new StartupError({
          component: "broker",
          reason: "BROKER=postgres needs a real PostgreSQL (DATABASE_URL): the embedded database cannot LISTEN " +
            "across connections"
        })
      }
      const url = Redacted.value(databaseUrl.value)
      const address = addressOf(url)
      const node = randomUUID()
      const runFork = Runtime.runFork(yield* Effect.runtime<never>())
      const local = yield* Effect.acquireRelease(PubSub.unbounded<BrokerMessage>(), PubSub.shutdown)
      const delivered = new Map<string, number>()
      const lock = yield* Effect.makeSemaphore(1)
      let listening = false

      /** Reads what a wake-up names, after what this node delivered of the thread, and hands it on. */
      const fetch = (wake: Wake) =>
        lock.withPermits(1)(Effect.gen(function*() {
          const after = Math.min(delivered.get(wake.t) ?? wake.f - 1, wake.f - 1)
          if ((delivered.get(wake.t) ?? 0) >= wake.l) return
          const events = yield* store.read(wake.t, after, wake.l - after)
          if (events.length === 0) return
          delivered.delete(wake.t)
          delivered.set(wake.t, events.at(-1)!.seq)
          if (delivered.size > REMEMBERED) delivered.delete(delivered.keys().next().value!)
          yield* PubSub.publishAll(local, events.map(toLive))
        })).pipe(
          // The hub fills what is missing at the thread's next event, or at the next reconnect.
          Effect.catchAll((error) =>
            Effect.logWarning("could not read the events a notification named").pipe(
              Effect.annotateLogs({ component: "broker", thread_id: wake.t, reason: error.reason })
            )
          )
        )

      const listen = Effect.acquireRelease(
        Effect.tryPromise({
          try: async () => {
            // Named, so an operator sees it in pg_stat_activity.
            const client = new pg.Client({ connectionString: url, application_name: "agent-chat-broker" })
            client.on("error", () => undefined)
            await client.connect()
            await client.query(`LISTEN ${CHANNEL}`)
            return client
          },
          catch: (cause) => cause
        }),
        (client) => Effect.promise(() => client.end().catch(() => undefined))
      )

      /** One LISTEN connection until it breaks; then the hubs resync, and it is opened again. */
      const session = Effect.scoped(Effect.gen(function*() {
        const client = yield* listen
        listening = true
        yield* Effect.logInfo("the PostgreSQL broker listens").pipe(Effect.annotateLogs({ component: "broker" }))
        yield* PubSub.publish(local, signal({ resync: true }))
        yield* Effect.async<void>((resume) => {
          client.on("notification", (message) => {
            let wake: Wake | PresenceWake
            try {
              wake = JSON.parse(message.payload ?? "")
            } catch {
              return
            }
            if (wake.n === node) return
            if ("p" in wake) runFork(PubSub.publish(local, signal({ presence: wake.p })))
            else runFork(fetch(wake))
          })
          client.on("end", () => resume(Effect.void))
          client.on("error", () => resume(Effect.void))
        })
      })).pipe(Effect.ensuring(Effect.sync(() => listening = false)))

      // The first connection is part of startup; later ones are retried without end.
      yield* Effect.scoped(listen).pipe(
        Effect.retry(startupRetrySchedule(config.startupRetry)),
        Effect.mapError((cause) =>
          new StartupError({
            component: "broker",
            reason: `PostgreSQL LISTEN unreachable at ${address} after ${config.startupRetry.attempts} attempts`,
            cause
          })
        )
      )
      yield* session.pipe(
        Effect.catchAll(() => Effect.void),
        // Quick retries after a loss, at most 2 s apart; a session that lasted starts the backoff afresh.
        Effect.repeat(
          Schedule.exponential(Duration.millis(100)).pipe(
            Schedule.union(Schedule.spaced("2 seconds")),
            Schedule.resetAfter("10 seconds")
          )
        ),
        Effect.forkScoped
      )

      const publish = (messages: ReadonlyArray<BrokerMessage>) =>
        Effect.gen(function*() {
          if (messages.length === 0) return
          yield* PubSub.publishAll(local, messages)
          for (const { seq, threadId } of messages) {
            if (seq > (delivered.get(threadId) ?? 0)) delivered.set(threadId, seq)
          }
          const byThread = new Map<string, { f: number; l: number }>()
          for (const { seq, threadId } of messages) {
            const range = byThread.get(threadId)
            if (range === undefined) byThread.set(threadId, { f: seq, l: seq })
            else byThread.set(threadId, { f: Math.min(range.f, seq), l: Math.max(range.l, seq) })
          }
          // One statement for every thread: a group commit publishes the events of many threads at once.
          const wakes = [...byThread].map(([t, { f, l }]) =>
            sql`(${JSON.stringify({ n: node, t, f, l } satisfies Wake)})`
          )
          yield* sql`SELECT pg_notify(${CHANNEL}, v.wake) FROM (VALUES ${sql.csv(wakes)}) AS v (wake)`.pipe(
            Effect.catchAll((error) =>
              Effect.logWarning("a notification could not be sent").pipe(
                Effect.annotateLogs({
                  component: "broker",
                  thread_ids: [...byThread.keys()].join(","),
                  reason: String(error)
                })
              )
            )
          )
        })

      return Broker.of({
        publish,
        subscribe: PubSub.subscribe(local),
        health: Effect.sync(() =>
          listening
            ? up({ kind: "postgres", address })
            : down(`the LISTEN connection to ${address} is lost; reconnecting`)
        ),
        presence: postgresPresence({
          sql,
          node,
          ttl: config.presenceTtl,
          local,
          notify: (p) =>
            sql`SELECT pg_notify(${CHANNEL}, ${JSON.stringify({ n: node, p } satisfies PresenceWake)})`.pipe(
              Effect.catchAll(() => Effect.void)
            )
        })
      })
    })
  )

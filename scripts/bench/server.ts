/**
 * agent-chat as benchmarked: the real layer graph of `layers/Graph.ts` with
 * benchmark choices (loopback, a long heartbeat, an outbox large enough for
 * the bursts, the embedded in-memory database or TEST_DATABASE_URL, the
 * test secret), plus the control endpoints of `control.ts`, which publish
 * straight to the broker (fan-out without storing) and store through the
 * event log (the events of one run per thread, started for the purpose).
 *
 * The database is the embedded PGlite in a fresh temporary data directory,
 * or a fresh database on the PostgreSQL server at BENCH_DATABASE_URL. The
 * nodes of the `nodes` workload share the database at BENCH_NODE_DATABASE_URL
 * instead (the orchestrator creates it and drops it), with the broker
 * BENCH_BROKER (`memory`, `redis` at BENCH_REDIS_URL, or `postgres`).
 *
 *   node --expose-gc --import tsx scripts/bench/server.ts
 */
import { NodeRuntime } from "@effect/platform-node"
import { Context, Duration, Effect, Layer, Logger, LogLevel, Option, Redacted } from "effect"
import { randomUUID } from "node:crypto"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { server as serverGraph } from "../../layers/Graph.ts"
import { PostgresTestDatabase } from "../../layers/Test.ts"
import { AuthLive } from "../../src/auth/Auth.ts"
import { BuiltinModelLive } from "../../src/builtin/BuiltinModel.ts"
import { BuiltinToolsLive } from "../../src/builtin/BuiltinTools.ts"
import { type AppConfigShape, AppConfigTest, makeTestConfig } from "../../src/config/AppConfig.ts"
import * as Database from "../../src/database/Database.ts"
import { Broker, BrokerInProcess } from "../../src/eventlog/Broker.ts"
import { EventLog, toLive } from "../../src/eventlog/EventLog.ts"
import { BrokerPostgres } from "../../src/eventlog/PgBroker.ts"
import { BrokerRedis } from "../../src/eventlog/RedisBroker.ts"
import { Hub } from "../../src/gateway/Hub.ts"
import { ServerAddress } from "../../src/http/Server.ts"
import type { EventDraft } from "../../src/protocol/Events.ts"
import { Threads } from "../../src/threads/Threads.ts"
import { BENCH_USER } from "./common.ts"
import { type BenchTarget, startControl } from "./control.ts"
import { StreamModelLive } from "./streamModel.ts"

const overrides: Partial<AppConfigShape> = {
  host: "127.0.0.1",
  port: 0,
  // The fan-out bursts queue up to 20,000 events per connection; nothing may be closed 1013 while measuring.
  outboxCapacity: 1_000_000,
  heartbeat: Duration.hours(1),
  databasePoolSize: 8,
  // The runs the control channel stores events in are started here, not by the supervisor, so nothing
  // renews their leases: a lease longer than any bench keeps the sweep from ending them mid-measurement.
  runLease: Duration.hours(24),
  // The agent workload's setting under test (DELTA_COALESCE_MS); off otherwise.
  deltaCoalesce: Duration.millis(Number(process.env.BENCH_DELTA_COALESCE_MS ?? 0))
}
const config = makeTestConfig(overrides)

const nodeUrl = process.env.BENCH_NODE_DATABASE_URL || undefined
const postgresUrl = nodeUrl ?? (process.env.BENCH_DATABASE_URL || undefined)
const dataDir = postgresUrl ? undefined : mkdtempSync(join(process.env.BENCH_TMPDIR ?? tmpdir(), "pglite-"))
if (dataDir !== undefined) process.on("exit", () => rmSync(dataDir, { recursive: true, force: true }))
const retry = { attempts: 3, baseDelay: Duration.millis(100), maxElapsed: Duration.seconds(10) }
const database = nodeUrl
  ? Database.layerUrl({ url: Redacted.make(nodeUrl), poolSize: config.databasePoolSize, retry })
  : postgresUrl
  ? PostgresTestDatabase(postgresUrl, config.databasePoolSize)
  : Database.layerEmbedded({ dataDir: Option.fromNullable(dataDir), retry })

const brokerKind = process.env.BENCH_BROKER ?? "memory"
const broker = brokerKind === "redis"
  ? BrokerRedis({ url: Redacted.make(process.env.BENCH_REDIS_URL ?? "redis://127.0.0.1:6379"), retry })
  : brokerKind === "postgres"
  ? BrokerPostgres(Option.fromNullable(nodeUrl).pipe(Option.map(Redacted.make)))
  : BrokerInProcess

const graph = serverGraph({
  config: AppConfigTest(overrides),
  database,
  broker,
  auth: AuthLive({
    secret: Option.getOrThrow(config.jwtSecret),
    issuer: config.jwtIssuer,
    audience: config.jwtAudience,
    clockSkew: config.jwtClockSkew,
    requireExpiry: false
  }),
  // The agent workload's runs stream from the paced fake model; the others start no run through the supervisor.
  model: process.env.BENCH_MODEL === "stream" ? StreamModelLive : BuiltinModelLive,
  tools: BuiltinToolsLive
})

const main = Effect.gen(function*() {
  const context = yield* Layer.build(graph)
  const hub = Context.get(context, Hub)
  const threads = Context.get(context, Threads)
  const eventLog = Context.get(context, EventLog)
  const broker = Context.get(context, Broker)
  const address = Context.get(context, ServerAddress)
  // The run whose events each thread stores; the log takes a run's events only while it runs.
  const runs = new Map<string, string>()
  const runOf = (threadId: string) =>
    Effect.gen(function*() {
      const known = runs.get(threadId)
      if (known !== undefined) return known
      const messageId = yield* threads.insertMessage({ threadId, userId: BENCH_USER, content: "bench" })
      const runId = Option.getOrThrow(yield* eventLog.startRun({ threadId, messageId, agent: "bench" }))
      runs.set(threadId, runId)
      return runId
    })

  const target: BenchTarget = {
    kind: "agent-chat",
    wsPort: address.port,
    runId: randomUUID(),
    store: nodeUrl
      ? `a database on PostgreSQL at ${new URL(nodeUrl).host} shared by the nodes, broker ${brokerKind}`
      : postgresUrl
      ? `a fresh database on PostgreSQL at ${new URL(postgresUrl).host}`
      : "embedded PGlite in a temporary data directory",
    createThreads: async (count) => {
      const ids: Array<string> = []
      for (let i = 0; i < count; i++) {
        const threadId = await Effect.runPromise(
          threads.create({ createdBy: BENCH_USER, title: `bench ${i}`, members: [] })
        )
        // Its run starts now, so its agent_started is in the head the clients join at, not among the events
        // a workload counts.
        await Effect.runPromise(runOf(threadId))
        ids.push(threadId)
      }
      return ids
    },
    head: (threadId) => Effect.runPromise(Effect.map(eventLog.head(threadId), Option.getOrElse(() => 0))),
    publish: (events) => Effect.runPromise(broker.publish(events.map(toLive))),
    append: (threadId, drafts) =>
      Effect.runPromise(
        Effect.flatMap(runOf(threadId), (runId) =>
          eventLog.append(
            threadId,
            drafts.map((d) => ({ ...d, run_id: runId }) as EventDraft)
          ))
      ),
    hubStats: () => Effect.runPromise(hub.stats).then((stats) => ({ ...stats }))
  }

  const control = yield* Effect.promise(() => startControl(target))
  yield* Effect.addFinalizer(() => Effect.sync(() => control.close()))
  return yield* Effect.never
}).pipe(
  Effect.scoped,
  Effect.provide(Logger.minimumLogLevel(LogLevel.Warning))
)

NodeRuntime.runMain(main)

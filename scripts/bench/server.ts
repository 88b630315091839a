/**
 * agent-chat as benchmarked: the real layer graph of `layers/Graph.ts` with
 * benchmark choices (loopback, a long heartbeat, an outbox large enough for
 * the bursts, the embedded in-memory database or TEST_DATABASE_URL, the
 * test secret), plus the control endpoints of `control.ts`, which publish
 * through `WebSocketHub.publish` and store through `Threads.append`.
 *
 * The database is the embedded PGlite in a fresh temporary data directory,
 * or a fresh database on the PostgreSQL server at BENCH_DATABASE_URL.
 *
 *   node --expose-gc --import tsx scripts/bench/server.ts
 */
import { NodeRuntime } from "@effect/platform-node"
import { Context, Duration, Effect, Layer, Logger, LogLevel, Option } from "effect"
import { randomUUID } from "node:crypto"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { server as serverGraph } from "../../layers/Graph.ts"
import { BuiltinModelLive } from "../../src/agents/BuiltinModel.ts"
import { BuiltinToolsLive } from "../../src/agents/tools/BuiltinTools.ts"
import { AuthLive } from "../../src/auth/Auth.ts"
import { BrokerInProcess } from "../../src/broker/Broker.ts"
import { type AppConfigShape, AppConfigTest, makeTestConfig } from "../../src/config/AppConfig.ts"
import * as Database from "../../src/database/Database.ts"
import { Threads } from "../../src/database/Threads.ts"
import type { EventDraft } from "../../src/domain/Events.ts"
import { ServerAddress } from "../../src/http/Server.ts"
import { WebSocketHub } from "../../src/websocket/WebSocketHub.ts"
import { PostgresTestDatabase } from "../../test/utils/TestDatabase.ts"
import { BENCH_USER } from "./common.ts"
import { type BenchTarget, startControl } from "./control.ts"

const overrides: Partial<AppConfigShape> = {
  host: "127.0.0.1",
  port: 0,
  // The fan-out bursts queue up to 20,000 events per connection; nothing may be closed 1013 while measuring.
  outboxCapacity: 1_000_000,
  heartbeat: Duration.hours(1),
  databasePoolSize: 8
}
const config = makeTestConfig(overrides)

const postgresUrl = process.env.BENCH_DATABASE_URL
const dataDir = postgresUrl ? undefined : mkdtempSync(join(process.env.BENCH_TMPDIR ?? tmpdir(), "pglite-"))
if (dataDir !== undefined) process.on("exit", () => rmSync(dataDir, { recursive: true, force: true }))
const retry = { attempts: 3, baseDelay: Duration.millis(100), maxElapsed: Duration.seconds(10) }
const database = postgresUrl
  ? PostgresTestDatabase(postgresUrl, config.databasePoolSize)
  : Database.layerEmbedded({ dataDir: Option.fromNullable(dataDir), poolSize: config.databasePoolSize, retry })

const graph = serverGraph({
  config: AppConfigTest(overrides),
  database,
  broker: BrokerInProcess,
  auth: AuthLive({
    secret: Option.getOrThrow(config.jwtSecret),
    issuer: config.jwtIssuer,
    audience: config.jwtAudience,
    clockSkew: config.jwtClockSkew,
    requireExpiry: false
  }),
  model: BuiltinModelLive,
  tools: BuiltinToolsLive
})

const main = Effect.gen(function*() {
  const context = yield* Layer.build(graph)
  const hub = Context.get(context, WebSocketHub)
  const threads = Context.get(context, Threads)
  const address = Context.get(context, ServerAddress)

  const target: BenchTarget = {
    kind: "agent-chat",
    wsPort: address.port,
    runId: randomUUID(),
    store: postgresUrl
      ? `a fresh database on PostgreSQL at ${new URL(postgresUrl).host}`
      : "embedded PGlite in a temporary data directory",
    createThreads: async (count) => {
      const ids: Array<string> = []
      for (let i = 0; i < count; i++) {
        ids.push(
          await Effect.runPromise(threads.create({ createdBy: BENCH_USER, title: `bench ${i}`, members: [] }))
        )
      }
      return ids
    },
    head: (threadId) => Effect.runPromise(Effect.map(threads.headSeq(threadId), Option.getOrElse(() => 0))),
    publish: (events) => Effect.runPromise(hub.publish(events)),
    append: (threadId, drafts) =>
      Effect.runPromise(threads.append(threadId, drafts.map((d) => ({ ...d, run_id: target.runId }) as EventDraft))),
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

/**
 * agent-chat as benchmarked: the real layer graph of `layers/Graph.ts` with
 * benchmark choices (loopback, a long heartbeat, an outbox large enough for
 * the bursts, the embedded in-memory database or TEST_DATABASE_URL, the
 * test secret), plus the control endpoints of `control.ts`, which publish
 * through `WebSocketHub.publish` and store through `Threads.append`.
 *
 *   node --expose-gc --import tsx scripts/bench/server.ts
 */
import { NodeRuntime } from "@effect/platform-node"
import { Context, Duration, Effect, Layer, Logger, LogLevel, Option } from "effect"
import { randomUUID } from "node:crypto"
import { server as serverGraph } from "../../layers/Graph.ts"
import { BuiltinModelLive } from "../../src/agents/BuiltinModel.ts"
import { BuiltinToolsLive } from "../../src/agents/tools/BuiltinTools.ts"
import { AuthLive } from "../../src/auth/Auth.ts"
import { BrokerInProcess } from "../../src/broker/Broker.ts"
import { type AppConfigShape, AppConfigTest, makeTestConfig } from "../../src/config/AppConfig.ts"
import { Threads } from "../../src/database/Threads.ts"
import type { EventDraft } from "../../src/domain/Events.ts"
import { ServerAddress } from "../../src/http/Server.ts"
import { WebSocketHub } from "../../src/websocket/WebSocketHub.ts"
import { TestDatabaseLive } from "../../test/utils/TestDatabase.ts"
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

const graph = serverGraph({
  config: AppConfigTest(overrides),
  database: TestDatabaseLive(config.databasePoolSize),
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

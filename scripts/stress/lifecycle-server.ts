/**
 * One server process of the lifecycle scenario, to be killed with SIGKILL:
 * the test graph (layers/Test.ts: test secret, in-process broker) on a
 * database that outlives it, with a one-second run lease so that the next
 * process ends the runs this one leaves behind within seconds. Its model
 * calls tools on every run (quick, slow, failing, sometimes two at once)
 * before it streams its answer.
 *
 *   LIFECYCLE_DATA_DIR=dir        embedded PGlite in dir (the default)
 *   LIFECYCLE_DATABASE_URL=url    or a PostgreSQL database
 *
 * Prints `{"port":n}` on stdout once it listens; logs warnings and errors
 * as JSON lines on stderr. It exits when its stdin closes, so a scenario
 * that dies takes its server with it.
 */
import { NodeRuntime } from "@effect/platform-node"
import { Context, Duration, Effect, Layer, Logger, LogLevel, Option, Redacted, Stream } from "effect"
import { testGraph } from "../../layers/Test.ts"
import { makeTestConfig } from "../../src/config/AppConfig.ts"
import * as Database from "../../src/database/Database.ts"
import { ServerAddress } from "../../src/http/Server.ts"
import { simpleModelLayer } from "../../src/llm/ModelInfo.ts"
import type { ChatMessage, ModelChunk } from "../../src/llm/SimpleModel.ts"
import { jsonLogger } from "../../src/observability/Logging.ts"
import { type Tool, ToolError } from "../../src/runs/Tool.ts"
import { Random } from "./random.ts"

const tools: ReadonlyArray<Tool> = [
  { name: "quick", description: "answers at once", parameters: {}, run: (input) => Effect.succeed({ echo: input }) },
  {
    name: "slow",
    description: "answers after `ms` milliseconds",
    parameters: {},
    run: (input) => {
      const ms = Number((input as { ms?: unknown }).ms ?? 100)
      return Effect.as(Effect.sleep(Duration.millis(ms)), { slept_ms: ms })
    }
  },
  {
    name: "failing",
    description: "always fails",
    parameters: {},
    run: () => Effect.fail(new ToolError({ message: "failed on purpose" }))
  }
]

const seed = Number(process.env.LIFECYCLE_SEED ?? 0)

/** A run's turns, drawn from its message id: one or two rounds of tool calls, then a streamed answer. */
const turn = (messages: ReadonlyArray<ChatMessage>): { chunks: Array<ModelChunk>; delayMs: number } => {
  let start = messages.length - 1
  while (start > 0 && messages[start]!.role !== "user") start--
  const message = messages[start]
  const plan = new Random(seed, message?.role === "user" ? message.messageId : "none")
  const step = messages.slice(start + 1).filter((m) => m.role === "assistant").length
  const rng = plan.fork(`step-${step}`)
  if (step >= plan.int(1, 2)) {
    return {
      chunks: Array.from({ length: rng.int(3, 8) }, (_, i): ModelChunk => ({ _tag: "TextDelta", delta: `part${i} ` })),
      delayMs: rng.int(10, 40)
    }
  }
  const chunks: Array<ModelChunk> = [{ _tag: "Thinking", text: `round ${step + 1}` }]
  const calls = rng.chance(0.35) ? 2 : 1
  for (let i = 0; i < calls; i++) {
    const name = rng.pick(["quick", "slow", "slow", "failing"])
    const input = name === "slow" ? { ms: rng.int(50, 500) } : { round: step }
    chunks.push({ _tag: "ToolCall", call: { id: `call-${step}-${i}`, name, input } })
  }
  return { chunks, delayMs: 5 }
}

const model = simpleModelLayer("lifecycle", (request) =>
  Stream.suspend(() => {
    const { chunks, delayMs } = turn(request.messages)
    return Stream.fromIterable(chunks).pipe(Stream.tap(() => Effect.sleep(Duration.millis(delayMs))))
  }))

const overrides = { runLease: Duration.seconds(1), heartbeat: Duration.hours(1) }
const retry = { attempts: 5, baseDelay: Duration.millis(100), maxElapsed: Duration.seconds(10) }
const url = process.env.LIFECYCLE_DATABASE_URL
const database = url !== undefined && url.length > 0
  ? Database.layerUrl({ url: Redacted.make(url), poolSize: makeTestConfig(overrides).databasePoolSize, retry })
  : Database.layerEmbedded({ dataDir: Option.some(process.env.LIFECYCLE_DATA_DIR ?? "./data/lifecycle"), retry })

const graph = testGraph({ config: overrides, database, model, extraTools: tools })

// A scenario that dies closes this pipe: the server must not outlive it.
process.stdin.on("end", () => process.exit(1))
process.stdin.resume()

Effect.gen(function*() {
  const context = yield* Layer.build(graph)
  process.stdout.write(`${JSON.stringify({ port: Context.get(context, ServerAddress).port })}\n`)
  return yield* Effect.never
}).pipe(
  Effect.scoped,
  Effect.tapErrorCause((cause) => Effect.logError("the lifecycle server failed", cause)),
  Effect.provide(Logger.replace(Logger.defaultLogger, jsonLogger((line) => process.stderr.write(line)))),
  Effect.provide(Logger.minimumLogLevel(LogLevel.Warning)),
  NodeRuntime.runMain({ disableErrorReporting: true, disablePrettyLogger: true })
)

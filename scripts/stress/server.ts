/**
 * The server under stress: the test graph (layers/Test.ts: the real layer
 * graph on port 0, the test database, in-process broker and test secret) with two
 * additions around it, so the scenarios can see inside: a fiber tracker
 * (`Supervisor.track`, which every fiber of the server's runtime reports
 * to) and a logger that counts what the server logs instead of printing it.
 */
import type { LanguageModel } from "@effect/ai"
import { Cause, Context, Duration, Effect, Exit, Layer, Logger, LogLevel, Scope, Stream, Supervisor } from "effect"
import { testGraph, testToken } from "../../layers/Test.ts"
import type { AppConfig, AppConfigShape } from "../../src/config/AppConfig.ts"
import { Hub, type HubStats } from "../../src/gateway/Hub.ts"
import { ServerAddress } from "../../src/http/Server.ts"
import { type ModelInfo, simpleModelLayer } from "../../src/llm/ModelInfo.ts"
import type { ModelChunk } from "../../src/llm/SimpleModel.ts"
import { Supervisor as AgentSupervisor } from "../../src/runs/Supervisor.ts"
import { StressClient } from "./client.ts"

export interface LogCounts {
  errors: number
  warnings: number
  /** The first few messages at warning level or above, for the report. */
  readonly first: Array<string>
}

export interface StressServer {
  readonly wsUrl: string
  readonly httpUrl: string
  readonly logs: LogCounts
  readonly hub: Context.Tag.Service<Hub>
  readonly stats: () => Promise<HubStats>
  readonly activeRuns: () => Promise<number>
  /** Fibers of the server's runtime that have started and not ended. */
  readonly liveFibers: () => Promise<number>
  readonly connect: (userId: string, timeoutMs?: number) => Promise<StressClient>
  readonly fetchAs: (userId: string, path: string) => Promise<Response>
  readonly close: () => Promise<void>
  /** Copies what the server logged into a scenario's report (errors counted, the first messages), then closes it. */
  readonly closeReporting: (counts: { server_errors_logged: number }, problems: Array<string>) => Promise<void>
}

export interface StressServerOptions {
  readonly config?: Partial<AppConfigShape>
  readonly model?: Layer.Layer<LanguageModel.LanguageModel | ModelInfo, never, AppConfig>
}

/** An error and the chain of its causes on one line: the root cause (a driver's message) is what explains it. */
const describe = (error: unknown): string => {
  const parts: Array<string> = []
  let current = error
  for (let depth = 0; depth < 6 && current !== undefined && current !== null; depth++) {
    if (typeof current !== "object") {
      parts.push(String(current))
      break
    }
    const record = current as { _tag?: unknown; reason?: unknown; message?: unknown; code?: unknown; cause?: unknown }
    const text = [record._tag, record.reason, record.message, record.code]
      .filter((part) => typeof part === "string" && part.length > 0)
      .join(" ")
    if (text.length > 0) parts.push(text)
    current = record.cause
  }
  return parts.join(" <- ")
}

const countingLogger = (counts: LogCounts) =>
  Logger.make(({ annotations, cause, logLevel, message }) => {
    if (LogLevel.lessThan(logLevel, LogLevel.Warning)) return
    if (LogLevel.greaterThanEqual(logLevel, LogLevel.Error)) counts.errors++
    else counts.warnings++
    if (counts.first.length < 5) {
      const text = Array.isArray(message) ? message.map(String).join(" ") : String(message)
      const failures = [...Cause.failures(cause), ...Cause.defects(cause)].map(describe)
      const context = [...annotations].map(([key, value]) => `${key}=${String(value)}`).join(" ")
      counts.first.push(`${logLevel.label} ${text}${failures.length > 0 ? `: ${failures.join("; ")}` : ""} ${context}`)
    }
  })

export const startServer = async (options: StressServerOptions = {}): Promise<StressServer> => {
  const logs: LogCounts = { errors: 0, warnings: 0, first: [] }
  const tracker = Effect.runSync(Supervisor.track)
  const layer = testGraph({
    // Pings are not under test here; a long interval keeps them out of the counts.
    config: { heartbeat: Duration.hours(1), ...options.config },
    ...(options.model === undefined ? {} : { model: options.model })
  }).pipe(
    Layer.provide(
      Layer.merge(Supervisor.addSupervisor(tracker), Logger.replace(Logger.defaultLogger, countingLogger(logs)))
    )
  )
  const scope = Effect.runSync(Scope.make())
  const context = await Effect.runPromise(Layer.buildWithScope(layer, scope))
  const { port } = Context.get(context, ServerAddress)
  const server = { wsUrl: `ws://127.0.0.1:${port}/ws`, httpUrl: `http://127.0.0.1:${port}` }
  const hub = Context.get(context, Hub)
  const supervisor = Context.get(context, AgentSupervisor)
  const tokens = new Map<string, Promise<string>>()
  // Only clients still open are held, so a churn of thousands keeps none alive.
  const clients = new Set<StressClient>()

  const token = (userId: string) => {
    let signed = tokens.get(userId)
    if (signed === undefined) tokens.set(userId, signed = Effect.runPromise(testToken(userId)))
    return signed
  }

  const close = async () => {
    for (const client of clients) client.terminate()
    await Effect.runPromise(Scope.close(scope, Exit.void).pipe(Effect.timeout("20 seconds"), Effect.ignore))
  }

  return {
    wsUrl: server.wsUrl,
    httpUrl: server.httpUrl,
    logs,
    hub,
    stats: () => Effect.runPromise(hub.stats),
    activeRuns: () => Effect.runPromise(supervisor.activeRuns),
    liveFibers: () => Effect.runPromise(Effect.map(tracker.value, (fibers) => fibers.length)),
    connect: async (userId, timeoutMs) => {
      const client = await StressClient.connect(server.wsUrl, await token(userId), timeoutMs)
      clients.add(client)
      client.ws.once("close", () => clients.delete(client))
      return client
    },
    fetchAs: async (userId, path) =>
      fetch(`${server.httpUrl}${path}`, { headers: { authorization: `Bearer ${await token(userId)}` } }),
    close,
    closeReporting: (counts, problems) => {
      counts.server_errors_logged = logs.errors
      problems.push(...logs.first)
      return close()
    }
  }
}

/**
 * A model that streams `pieces` answer deltas with `delayMs` between them: a run long enough to
 * disconnect in the middle of, as a real provider's stream is.
 */
export const pacedModel = (pieces: number, delayMs: number) =>
  simpleModelLayer("paced", () =>
    Stream.fromIterable(
      Array.from({ length: pieces }, (_, i): ModelChunk => ({ _tag: "TextDelta", delta: `p${i} ` }))
    ).pipe(Stream.tap(() => Effect.sleep(delayMs))))

/** A model that answers with `pieces` deltas of `bytes` characters at once: enough to swamp a stalled reader. */
export const floodModel = (pieces: number, bytes: number) => {
  const chunks = Array.from({ length: pieces }, (_, i): ModelChunk => ({
    _tag: "TextDelta",
    delta: `${i}:`.padEnd(bytes, "z")
  }))
  return simpleModelLayer("flood", () => Stream.fromIterable(chunks))
}

/**
 * What the openai-chat suites share: a fake Chat Completions server per
 * test, the provider wired to it with counting ids, recorded chunks in
 * OpenAI's shape, and stream parts as plain data to compare.
 */
import { IdGenerator, LanguageModel, Tool, Toolkit } from "@effect/ai"
import type { Prompt } from "@effect/ai"
import { FetchHttpClient } from "@effect/platform"
import { Chunk, DateTime, Duration, Effect, Layer, Option, Schema, Stream } from "effect"
import { OpenAiChatLayer } from "../../src/llm/OpenAiChat.ts"
import type { ProviderSettings } from "../../src/llm/Settings.ts"
import { type Answer, FakeLlmServer } from "../utils/FakeLlmServer.ts"

export const PATH = "/v1/chat/completions"

export const Calculator = Tool.make("calculator", {
  description: "Evaluates an arithmetic expression",
  parameters: { expression: Schema.String },
  success: Schema.Unknown
})
export const Clock = Tool.make("clock", { description: "Tells the time", success: Schema.String })
export const toolkit = Toolkit.make(Calculator, Clock)
export const handlers = toolkit.toLayer({ calculator: () => Effect.succeed(0), clock: () => Effect.succeed("noon") })

export const fakeServer = Effect.acquireRelease(
  Effect.promise(() => FakeLlmServer.start()),
  (fake) => Effect.promise(() => fake.close())
)

export const settingsFor = (fake: FakeLlmServer, overrides: Partial<ProviderSettings> = {}): ProviderSettings => ({
  provider: "openai-chat",
  baseUrl: `${fake.url}/v1`,
  apiKey: Option.none(),
  model: "gpt-test",
  maxOutputTokens: Option.none(),
  temperature: Option.none(),
  requestTimeout: Duration.seconds(30),
  ...overrides
})

/** Ids id-1, id-2, … for the parts the API gives no id of its own. */
export const countingIds = Layer.sync(IdGenerator.IdGenerator, () => {
  let n = 0
  return { generateId: () => Effect.sync(() => `id-${++n}`) }
})

export const provide = (settings: ProviderSettings) => <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  effect.pipe(
    Effect.provide(OpenAiChatLayer(settings).pipe(Layer.provide(countingIds), Layer.provide(FetchHttpClient.layer))),
    Effect.provide(handlers)
  )

const hidden = new Set(["metadata", "providerExecuted", "~effect/ai/Content/Part"])

/** A stream part as plain data: no metadata, Options unwrapped, dates as ISO text. */
export const plain = (part: object): Record<string, unknown> =>
  Object.fromEntries(
    Object.entries(part).filter(([key]) => !hidden.has(key)).map(([key, value]) => [
      key,
      Option.isOption(value)
        ? Option.getOrUndefined(Option.map(value, (v) => DateTime.isDateTime(v) ? DateTime.formatIso(v) : v))
        : key === "usage"
        ? { ...value }
        : value
    ])
  )

export const streamParts = (settings: ProviderSettings, prompt: Prompt.RawInput = "Hi", tools = true) =>
  (tools
    ? LanguageModel.streamText({ prompt, toolkit, disableToolCallResolution: true })
    : LanguageModel.streamText({ prompt })).pipe(
      Stream.runCollect,
      Effect.map((parts) => Chunk.toArray(parts).map(plain)),
      provide(settings)
    )

export const streamError = (settings: ProviderSettings, tools = true) => Effect.flip(streamParts(settings, "Hi", tools))

// Recorded chunks, in the shape OpenAI sends them.
export const base = { id: "chatcmpl-9", object: "chat.completion.chunk", created: 1_700_000_000, model: "gpt-test" }
export const delta = (d: object) => ({ ...base, choices: [{ index: 0, delta: d, finish_reason: null }] })
export const finish = (reason: string) => ({ ...base, choices: [{ index: 0, delta: {}, finish_reason: reason }] })
export const usage = (u: object) => ({ ...base, choices: [], usage: u })
export const sse = (events: ReadonlyArray<unknown>, more: Partial<Extract<Answer, { kind: "sse" }>> = {}): Answer => ({
  kind: "sse",
  events,
  ...more
})

export const metadata = {
  type: "response-metadata",
  id: "chatcmpl-9",
  modelId: "gpt-test",
  timestamp: "2023-11-14T22:13:20.000Z"
}
export const noUsage = { inputTokens: undefined, outputTokens: undefined, totalTokens: undefined }
export const textParts = (id: string, ...deltas: Array<string>) => [
  { type: "text-start", id },
  ...deltas.map((d) => ({ type: "text-delta", id, delta: d })),
  { type: "text-end", id }
]

export const callPieces = (index: number, id: string, ...args: Array<string>) => [
  delta({ tool_calls: [{ index, id, type: "function", function: { name: "calculator", arguments: "" } }] }),
  ...args.map((a) => delta({ tool_calls: [{ index, function: { arguments: a } }] }))
]

export const answered = sse([delta({ content: "ok" }), finish("stop"), "data: [DONE]"])

/** Whether the first request the fake took was closed by the client, polled for two seconds. */
export const aborted = (fake: FakeLlmServer) =>
  Effect.gen(function*() {
    for (let i = 0; i < 100; i++) {
      if (fake.requestsTo(PATH)[0]?.aborted === true) return true
      yield* Effect.sleep("20 millis")
    }
    return false
  })

/**
 * The two @effect/ai providers as test cases over the fake LLM server: their
 * settings, the recorded answers each speaks, and a way to stream one answer
 * with a one-tool toolkit whose calls are left to the caller.
 */
import { LanguageModel, Tool, Toolkit } from "@effect/ai"
import { FetchHttpClient, type HttpClient } from "@effect/platform"
import { Chunk, Duration, Effect, Either, type Layer, Option, Redacted, Schema, Stream } from "effect"
import { AnthropicLayer } from "../../src/llm/Anthropic.ts"
import { OpenAiResponsesLayer } from "../../src/llm/OpenAiResponses.ts"
import type { ProviderSettings } from "../../src/llm/Settings.ts"
import { type Answer, FakeLlmServer } from "./FakeLlmServer.ts"
import * as Fake from "./FakeProviders.ts"

export type Sse = Extract<Answer, { kind: "sse" }>

export const KEY = "sk-secret-123"

export const Calculator = Tool.make("calculator", {
  description: "Evaluates an arithmetic expression",
  parameters: { expression: Schema.String },
  success: Schema.Unknown
})
export const toolkit = Toolkit.make(Calculator)
/** The toolkit's handler, which disableToolCallResolution leaves uncalled: tool calls are the caller's. */
export const handlers = toolkit.toLayer({ calculator: () => Effect.dieMessage("the calculator was called") })

export interface ProviderCase {
  readonly name: string
  readonly path: string
  readonly settings: (url: string, overrides?: Partial<ProviderSettings>) => ProviderSettings
  readonly layer: (settings: ProviderSettings) => Layer.Layer<LanguageModel.LanguageModel, never, HttpClient.HttpClient>
  readonly text: (pieces: ReadonlyArray<string>) => Sse
  readonly toolCall: (id: string, argsPieces: ReadonlyArray<string>) => Sse
  readonly reasoning: (thoughts: ReadonlyArray<string>, text: ReadonlyArray<string>) => Sse
  readonly usage: Sse
  readonly expectedUsage: Record<string, number>
  /** An error answer with this status, and the provider's words in it. */
  readonly failure: (status: number) => readonly [Answer, string]
  readonly keyHeader: (headers: Record<string, unknown>) => unknown
}

const base = (url: string): Omit<ProviderSettings, "provider" | "model"> => ({
  baseUrl: url,
  apiKey: Option.some(Redacted.make(KEY)),
  maxOutputTokens: Option.some(256),
  temperature: Option.some(0.2),
  requestTimeout: Duration.seconds(5)
})

export const cases: ReadonlyArray<ProviderCase> = [{
  name: "openai-responses",
  path: "/v1/responses",
  settings: (url, overrides) => ({
    ...base(`${url}/v1`),
    provider: "openai-responses",
    model: "gpt-4.1",
    ...overrides
  }),
  layer: OpenAiResponsesLayer,
  text: (pieces) => Fake.responsesText(pieces),
  toolCall: (id, args) => Fake.responsesToolCall(id, "calculator", args),
  reasoning: (thoughts, text) => Fake.responsesReasoning(thoughts, text),
  usage: Fake.responsesText(["ok"], { usage: { input: 37, output: 11, reasoning: 5, cached: 3 } }),
  expectedUsage: { inputTokens: 37, outputTokens: 11, totalTokens: 48, reasoningTokens: 5, cachedInputTokens: 3 },
  failure: (status) => {
    const said = status === 401 ? "Incorrect API key provided: sk-se*****123." : "The server had an error."
    return [Fake.openAiError(status, said, status === 401 ? "invalid_request_error" : "server_error"), said]
  },
  keyHeader: (headers) => headers.authorization
}, {
  name: "anthropic",
  path: "/v1/messages",
  settings: (url, overrides) => ({ ...base(url), provider: "anthropic", model: "claude-sonnet-4-5", ...overrides }),
  layer: AnthropicLayer,
  text: (pieces) => Fake.messagesText(pieces),
  toolCall: (id, args) => Fake.messagesToolUse(id, "calculator", args),
  reasoning: (thoughts, text) => Fake.messagesThinking(thoughts, text, { signature: "sig-abc" }),
  usage: Fake.messagesText(["ok"], { usage: { input: 25, output: 15, cached: 4 } }),
  expectedUsage: { inputTokens: 25, outputTokens: 15, totalTokens: 40, cachedInputTokens: 4 },
  failure: (status) => {
    const said = status === 401 ? "invalid x-api-key" : "Internal server error"
    return [Fake.anthropicError(status, status === 401 ? "authentication_error" : "api_error", said), said]
  },
  keyHeader: (headers) => headers["x-api-key"]
}]

export const fakeServer = Effect.acquireRelease(
  Effect.promise(() => FakeLlmServer.start()),
  (server) => Effect.promise(() => server.close())
)

/** Every part of one streamed answer, with tool calls left to the caller. */
export const streamParts = (
  c: ProviderCase,
  settings: ProviderSettings,
  prompt: Parameters<typeof LanguageModel.streamText>[0]["prompt"] = "What is 2+3?",
  http: Layer.Layer<HttpClient.HttpClient> = FetchHttpClient.layer
) =>
  LanguageModel.streamText({ prompt, toolkit, disableToolCallResolution: true }).pipe(
    Stream.runCollect,
    Effect.map(Chunk.toArray),
    Effect.provide(c.layer(settings)),
    Effect.provide(handlers),
    Effect.provide(http)
  )

/** Index just past the first delta frame: a stream cut there has begun to answer. */
export const firstDelta = (answer: Sse) =>
  answer.events.findIndex((e) => /delta/.test((e as { type: string }).type)) + 1

/** The parts streamed before the stream ended, and its failure if it failed. */
export const streamOutcome = (
  c: ProviderCase,
  settings: ProviderSettings,
  prompt: Parameters<typeof LanguageModel.streamText>[0]["prompt"] = "What is 2+3?"
) =>
  LanguageModel.streamText({ prompt, toolkit, disableToolCallResolution: true }).pipe(
    Stream.either,
    Stream.runCollect,
    Effect.map((all) => {
      const items = Chunk.toArray(all)
      return {
        parts: items.flatMap((e) => Either.isRight(e) ? [e.right] : []),
        error: items.flatMap((e) => Either.isLeft(e) ? [e.left] : [])[0]
      }
    }),
    Effect.provide(c.layer(settings)),
    Effect.provide(handlers),
    Effect.provide(FetchHttpClient.layer)
  )

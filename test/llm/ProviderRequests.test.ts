/**
 * What the two providers send (the model, max tokens, temperature, the
 * key's header, and a conversation with a tool call and its result in each
 * API's shape), and the settings' requestTimeout cutting off a server that
 * never answers or stops in the middle of a stream.
 */
import type { Prompt } from "@effect/ai"
import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect, Option } from "effect"
import * as Fake from "../utils/FakeProviders.ts"
import { cases, fakeServer, firstDelta, KEY, streamOutcome, streamParts } from "../utils/ProviderCases.ts"
import { until } from "../utils/until.ts"

const [responses, messages] = cases as [(typeof cases)[0], (typeof cases)[0]]

const conversation: ReadonlyArray<Prompt.MessageEncoded> = [
  { role: "system", content: "You are terse." },
  { role: "user", content: "What is 2+3?" },
  {
    role: "assistant",
    content: [
      { type: "text", text: "Let me compute." },
      { type: "tool-call", id: "call_1", name: "calculator", params: { expression: "2+3" }, providerExecuted: false }
    ]
  },
  {
    role: "tool",
    content: [{
      type: "tool-result",
      id: "call_1",
      name: "calculator",
      isFailure: false,
      result: { value: 5 },
      providerExecuted: false
    }]
  }
]

const calculatorSchema = {
  type: "object",
  required: ["expression"],
  properties: { expression: { type: "string" } },
  additionalProperties: false
}

describe("what the providers send", () => {
  it.scopedLive("Responses API: model, max_output_tokens, temperature, bearer key, and the conversation as input items", () =>
    Effect.gen(function*() {
      const server = yield* fakeServer
      server.script(responses.path, Fake.responsesText(["5"]))
      yield* streamParts(responses, responses.settings(server.url), conversation)
      const [request] = server.requestsTo("/v1/responses")
      expect(request!.headers.authorization).toBe(`Bearer ${KEY}`)
      expect(request!.body).toMatchObject({
        model: "gpt-4.1",
        max_output_tokens: 256,
        temperature: 0.2,
        stream: true,
        tool_choice: "auto",
        tools: [{
          type: "function",
          name: "calculator",
          description: "Evaluates an arithmetic expression",
          parameters: calculatorSchema,
          strict: false
        }]
      })
      expect(request!.body.input).toEqual([
        { role: "system", content: "You are terse." },
        { role: "user", content: [{ type: "input_text", text: "What is 2+3?" }] },
        { role: "assistant", content: [{ type: "output_text", text: "Let me compute." }] },
        { type: "function_call", call_id: "call_1", name: "calculator", arguments: "{\"expression\":\"2+3\"}" },
        { type: "function_call_output", call_id: "call_1", output: "{\"value\":5}" }
      ])
    }))

  it.scopedLive("Responses API: without the two options set, neither is sent", () =>
    Effect.gen(function*() {
      const server = yield* fakeServer
      server.script(responses.path, Fake.responsesText(["5"]))
      const settings = responses.settings(server.url, { maxOutputTokens: Option.none(), temperature: Option.none() })
      yield* streamParts(responses, settings)
      const body = server.requestsTo("/v1/responses")[0]!.body
      expect(body).not.toHaveProperty("max_output_tokens")
      expect(body).not.toHaveProperty("temperature")
    }))

  it.scopedLive("Messages API: model, max_tokens, temperature, the key and version headers, system apart, tool turns", () =>
    Effect.gen(function*() {
      const server = yield* fakeServer
      server.script(messages.path, Fake.messagesText(["5"]))
      yield* streamParts(messages, messages.settings(server.url), conversation)
      const [request] = server.requestsTo("/v1/messages")
      expect(request!.headers["x-api-key"]).toBe(KEY)
      expect(request!.headers["anthropic-version"]).toBe("2023-06-01")
      expect(request!.headers.authorization).toBeUndefined()
      expect(request!.body).toMatchObject({
        model: "claude-sonnet-4-5",
        max_tokens: 256,
        temperature: 0.2,
        stream: true,
        system: [{ type: "text", text: "You are terse." }],
        tool_choice: { type: "auto" },
        tools: [{
          name: "calculator",
          description: "Evaluates an arithmetic expression",
          input_schema: calculatorSchema
        }]
      })
      expect(request!.body.messages).toEqual([
        { role: "user", content: [{ type: "text", text: "What is 2+3?" }] },
        {
          role: "assistant",
          content: [
            { type: "text", text: "Let me compute." },
            { type: "tool_use", id: "call_1", name: "calculator", input: { expression: "2+3" } }
          ]
        },
        {
          role: "user",
          content: [{ type: "tool_result", tool_use_id: "call_1", content: "{\"value\":5}", is_error: false }]
        }
      ])
    }))

  it.scopedLive("Messages API: max_tokens is 4096 when no maximum is set (the API requires one), no temperature", () =>
    Effect.gen(function*() {
      const server = yield* fakeServer
      server.script(messages.path, Fake.messagesText(["5"]))
      const settings = messages.settings(server.url, { maxOutputTokens: Option.none(), temperature: Option.none() })
      yield* streamParts(messages, settings)
      const body = server.requestsTo("/v1/messages")[0]!.body
      expect(body.max_tokens).toBe(4096)
      expect(body).not.toHaveProperty("temperature")
    }))

  it.scopedLive("Messages API: LLM_THINKING_TOKENS turns extended thinking on, max_tokens above its budget", () =>
    Effect.gen(function*() {
      const server = yield* fakeServer
      server.script(messages.path, Fake.messagesText(["5"]), Fake.messagesText(["6"]))
      const unset = messages.settings(server.url, { maxOutputTokens: Option.none() })
      yield* streamParts(messages, unset)
      expect(server.requestsTo("/v1/messages")[0]!.body).not.toHaveProperty("thinking")
      const settings = messages.settings(server.url, {
        maxOutputTokens: Option.none(),
        thinkingTokens: Option.some(2048)
      })
      yield* streamParts(messages, settings)
      const body = server.requestsTo("/v1/messages")[1]!.body
      expect(body.thinking).toEqual({ type: "enabled", budget_tokens: 2048 })
      expect(body.max_tokens).toBe(4096 + 2048)
    }))
})

describe.each(cases)("$name and the requestTimeout", (c) => {
  it.scopedLive("fails a request that gets no answer after the requestTimeout, and closes it", () =>
    Effect.gen(function*() {
      const server = yield* fakeServer
      server.script(c.path, { kind: "silent" })
      const started = Date.now()
      const { error, parts } = yield* streamOutcome(c, c.settings(server.url, { requestTimeout: Duration.millis(300) }))
      const elapsed = Date.now() - started
      expect(parts).toEqual([])
      expect(error).toMatchObject({ _tag: "HttpRequestError", reason: "Transport" })
      expect(error!.message).toContain("no answer within 300ms")
      expect(JSON.stringify(error)).not.toContain(KEY)
      expect(elapsed).toBeGreaterThanOrEqual(290)
      expect(elapsed).toBeLessThan(3_000)
      yield* Effect.promise(() => until(async () => server.requests[0]?.aborted, "the request to be aborted", 3_000))
    }))

  it.scopedLive("fails a stream that goes quiet for the requestTimeout after it began, and closes it", () =>
    Effect.gen(function*() {
      const server = yield* fakeServer
      const answer = c.text(["Hel", "lo"])
      server.script(c.path, Fake.stalledAfter(answer, firstDelta(answer)))
      const { error, parts } = yield* streamOutcome(c, c.settings(server.url, { requestTimeout: Duration.millis(300) }))
      expect(parts.flatMap((p) => p.type === "text-delta" ? [p.delta] : [])).toEqual(["Hel"])
      expect(parts.some((p) => p.type === "finish")).toBe(false)
      expect(error).toMatchObject({ _tag: "HttpResponseError", reason: "Decode", response: { status: 200 } })
      expect(error!.message).toContain("the answer stalled: nothing came for 300ms")
      expect(JSON.stringify(error)).not.toContain(KEY)
      yield* Effect.promise(() => until(async () => server.requests[0]?.aborted, "the request to be aborted", 3_000))
    }))

  it.scopedLive("lets a slow stream through whose every gap is under the requestTimeout", () =>
    Effect.gen(function*() {
      const server = yield* fakeServer
      const answer = c.text(["a", "b", "c"])
      // About ten pieces, 50ms apart.
      server.script(c.path, { ...answer, split: Math.ceil(JSON.stringify(answer.events).length / 10), delayMs: 50 })
      const started = Date.now()
      const { error, parts } = yield* streamOutcome(c, c.settings(server.url, { requestTimeout: Duration.millis(300) }))
      // The whole answer took longer than the timeout: only a gap counts.
      expect(Date.now() - started).toBeGreaterThan(300)
      expect(error).toBeUndefined()
      expect(parts.flatMap((p) => p.type === "text-delta" ? [p.delta] : [])).toEqual(["a", "b", "c"])
    }))
})

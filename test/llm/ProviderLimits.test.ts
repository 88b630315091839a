/**
 * What the @effect/ai providers do with answers a model or a server gets
 * wrong, pinned here so that a caller knows what to handle: a call of an
 * unknown tool, unparsable or ill-typed arguments, an error in the middle
 * of a stream, a failed response, and frames the client does not know.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Fake from "../utils/FakeProviders.ts"
import { cases, fakeServer, streamOutcome } from "../utils/ProviderCases.ts"

const [responses, messages] = cases as [(typeof cases)[0], (typeof cases)[0]]

const call = (c: (typeof cases)[0], name: string, args: string) =>
  c.name === "anthropic"
    ? Fake.messagesToolUse("toolu_01", name, [args])
    : Fake.responsesToolCall("call_01", name, [args])

describe.each(cases)("$name and a model's bad tool call", (c) => {
  it.scopedLive("a call of a tool not in the toolkit fails the whole stream with MalformedOutput", () =>
    Effect.gen(function*() {
      const server = yield* fakeServer
      server.script(c.path, call(c, "shell", "{\"command\":\"ls\"}"))
      const { error, parts } = yield* streamOutcome(c, c.settings(server.url))
      expect(error).toMatchObject({ _tag: "MalformedOutput", module: "LanguageModel", method: "streamText" })
      expect(parts.some((p) => p.type === "tool-call" || p.type === "finish")).toBe(false)
    }))

  it.scopedLive("arguments that are not JSON fail the stream with MalformedOutput naming the tool", () =>
    Effect.gen(function*() {
      const server = yield* fakeServer
      server.script(c.path, call(c, "calculator", "{\"expression\": \"2+"))
      const { error } = yield* streamOutcome(c, c.settings(server.url))
      expect(error).toMatchObject({ _tag: "MalformedOutput" })
      expect(error!.message).toContain("Failed to securely parse tool call parameters for tool 'calculator'")
    }))

  it.scopedLive("arguments of the wrong type fail the stream with MalformedOutput", () =>
    Effect.gen(function*() {
      const server = yield* fakeServer
      server.script(c.path, call(c, "calculator", "{\"expression\": 5}"))
      const { error, parts } = yield* streamOutcome(c, c.settings(server.url))
      expect(error).toMatchObject({ _tag: "MalformedOutput", module: "LanguageModel" })
      expect(parts.some((p) => p.type === "tool-call")).toBe(false)
    }))
})

describe("errors inside a 200 stream", () => {
  it.scopedLive("Messages API: an `error` event mid-stream is an `error` part, not a failure, and no finish follows", () =>
    Effect.gen(function*() {
      const server = yield* fakeServer
      const answer = Fake.messagesText(["Hel", "lo"])
      const overloaded = { type: "error", error: { type: "overloaded_error", message: "Overloaded" } }
      server.script(messages.path, {
        ...answer,
        events: [...answer.events.slice(0, 4), overloaded],
        eventNames: [...answer.eventNames!.slice(0, 4), "error"]
      })
      const { error, parts } = yield* streamOutcome(messages, messages.settings(server.url))
      expect(error).toBeUndefined()
      expect(parts.filter((p) => p.type === "error").map((p) => p.error)).toEqual([overloaded.error])
      expect(parts.some((p) => p.type === "finish")).toBe(false)
    }))

  // @effect/ai-openai alone reads it as a finish with reason "stop", the error dropped; our layer does not.
  it.scopedLive("Responses API: `response.failed` is an `error` part with the provider's words, not a finish", () =>
    Effect.gen(function*() {
      const server = yield* fakeServer
      const answer = Fake.responsesText(["Hel"])
      const created = answer.events[0] as { response: Record<string, unknown> }
      const failed = {
        type: "response.failed",
        sequence_number: 1,
        response: { ...created.response, status: "failed", error: { code: "server_error", message: "boom" } }
      }
      server.script(responses.path, {
        kind: "sse",
        events: [created, failed],
        eventNames: ["response.created", "response.failed"]
      })
      const { error, parts } = yield* streamOutcome(responses, responses.settings(server.url))
      expect(error).toBeUndefined()
      expect(parts.map((p) => p.type)).toEqual(["response-metadata", "error"])
      expect(parts[1]).toMatchObject({ type: "error", error: { code: "server_error", message: "boom" } })
    }))

  it.scopedLive("Responses API: an `error` event is an `error` part carrying the provider's message", () =>
    Effect.gen(function*() {
      const server = yield* fakeServer
      const answer = Fake.responsesText(["Hel"])
      const event = {
        type: "error",
        sequence_number: 1,
        code: "rate_limit_exceeded",
        message: "Slow down",
        param: null
      }
      server.script(responses.path, {
        kind: "sse",
        events: [answer.events[0], event],
        eventNames: ["response.created", "error"]
      })
      const { error, parts } = yield* streamOutcome(responses, responses.settings(server.url))
      expect(error).toBeUndefined()
      expect(parts.filter((p) => p.type === "error")).toMatchObject([{ error: { message: "Slow down" } }])
    }))
})

describe("frames the client does not know", () => {
  it.scopedLive("Responses API: skips them and goes on", () =>
    Effect.gen(function*() {
      const server = yield* fakeServer
      const answer = Fake.responsesText(["Hel", "lo"])
      const events = [...answer.events]
      events.splice(3, 0, { type: "keepalive", sequence_number: 99 })
      server.script(responses.path, { kind: "sse", events, eventNames: events.map((e: any) => e.type) })
      const { error, parts } = yield* streamOutcome(responses, responses.settings(server.url))
      expect(error).toBeUndefined()
      expect(parts.flatMap((p) => p.type === "text-delta" ? [p.delta] : []).join("")).toBe("Hello")
    }))

  it.scopedLive("Messages API: fails the whole stream with MalformedOutput (a thinking block opened without `signature`)", () =>
    Effect.gen(function*() {
      const server = yield* fakeServer
      const answer = Fake.messagesThinking(["hm"], ["ok"])
      const events = answer.events.map((e: any) =>
        e.type === "content_block_start" && e.content_block.type === "thinking"
          ? { ...e, content_block: { type: "thinking", thinking: "" } }
          : e
      )
      server.script(messages.path, { ...answer, events })
      const { error, parts } = yield* streamOutcome(messages, messages.settings(server.url))
      expect(error).toMatchObject({ _tag: "MalformedOutput", module: "AnthropicClient" })
      expect(parts.some((p) => p.type.startsWith("reasoning") || p.type.startsWith("text"))).toBe(false)
    }))
})

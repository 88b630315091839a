/**
 * The openai-chat provider reading recorded Chat Completions streams:
 * text, reasoning, tool calls in pieces and in parallel, frames cut at any
 * byte, the finish part with its usage, and generateText's whole parts.
 */
import { LanguageModel } from "@effect/ai"
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import {
  callPieces,
  delta,
  fakeServer,
  finish,
  metadata,
  noUsage,
  PATH,
  plain,
  provide,
  settingsFor,
  sse,
  streamParts,
  textParts,
  toolkit,
  usage
} from "./OpenAiChatHarness.ts"

describe("openai-chat streaming", () => {
  it.scopedLive("streams text, then a finish part with the usage of the last chunk", () =>
    Effect.gen(function*() {
      const fake = yield* fakeServer
      fake.script(
        PATH,
        sse([
          delta({ role: "assistant", content: "" }),
          delta({ content: "Hel" }),
          delta({ content: "lo!" }),
          finish("stop"),
          usage({
            prompt_tokens: 12,
            completion_tokens: 5,
            total_tokens: 17,
            completion_tokens_details: { reasoning_tokens: 2 },
            prompt_tokens_details: { cached_tokens: 8 }
          }),
          "data: [DONE]"
        ])
      )
      expect(yield* streamParts(settingsFor(fake), "Hi", false)).toEqual([
        metadata,
        ...textParts("id-1", "Hel", "lo!"),
        {
          type: "finish",
          reason: "stop",
          usage: { inputTokens: 12, outputTokens: 5, totalTokens: 17, reasoningTokens: 2, cachedInputTokens: 8 }
        }
      ])
    }))

  it.scopedLive("reads the bare chunks of small servers: no id, model, created, index or [DONE]", () =>
    Effect.gen(function*() {
      const fake = yield* fakeServer
      fake.script(
        PATH,
        sse([
          { choices: [{ delta: { content: "Hi " } }] },
          { choices: [{ delta: { content: "there" } }] },
          {
            choices: [{ delta: { tool_calls: [{ index: 0, id: "c1", function: { name: "clock", arguments: "{}" } }] } }]
          },
          { choices: [{ delta: {}, finish_reason: "tool_calls" }] }
        ])
      )
      const parts = (yield* streamParts(settingsFor(fake), "Hi")).map(plain)
      expect(parts.filter((p) => p.type === "text-delta").map((p) => p.delta)).toEqual(["Hi ", "there"])
      expect(parts.filter((p) => p.type === "tool-call")).toMatchObject([{ id: "c1", name: "clock", params: {} }])
      expect(parts.at(-1)).toMatchObject({ type: "finish", reason: "tool-calls" })
    }))

  it.scopedLive("reads SSE frames cut at odd bytes, inside multi-byte characters", () =>
    Effect.gen(function*() {
      const fake = yield* fakeServer
      const events = [delta({ content: "Grüße, café " }), delta({ content: "🎉✓" }), finish("length"), "data: [DONE]"]
      fake.script(PATH, sse(events, { split: [1, 7, 3] }), sse(events, { split: 2 }))
      const expected = [metadata, ...textParts("id-1", "Grüße, café ", "🎉✓"), {
        type: "finish",
        reason: "length",
        usage: noUsage
      }]
      expect(yield* streamParts(settingsFor(fake))).toEqual(expected)
      expect(yield* streamParts(settingsFor(fake))).toEqual(expected)
    }))

  it.scopedLive("assembles tool-call arguments sent in many pieces", () =>
    Effect.gen(function*() {
      const fake = yield* fakeServer
      fake.script(
        PATH,
        sse([
          ...callPieces(0, "call_1", "{\"expr", "ession\": ", "\"2 +", " 2\"}"),
          finish("tool_calls"),
          "data: [DONE]"
        ])
      )
      expect(yield* streamParts(settingsFor(fake))).toEqual([
        metadata,
        { type: "tool-params-start", id: "call_1", name: "calculator" },
        { type: "tool-params-delta", id: "call_1", delta: "{\"expr" },
        { type: "tool-params-delta", id: "call_1", delta: "ession\": " },
        { type: "tool-params-delta", id: "call_1", delta: "\"2 +" },
        { type: "tool-params-delta", id: "call_1", delta: " 2\"}" },
        { type: "tool-params-end", id: "call_1" },
        { type: "tool-call", id: "call_1", name: "calculator", params: { expression: "2 + 2" } },
        { type: "finish", reason: "tool-calls", usage: noUsage }
      ])
    }))

  it.scopedLive("keeps two parallel tool calls apart by index, each with its own id", () =>
    Effect.gen(function*() {
      const fake = yield* fakeServer
      const [a0, a1, a2] = callPieces(0, "call_a", "{\"expression\":", "\"1+1\"}")
      const [b0, b1, b2] = callPieces(1, "call_b", "{\"expression\":", "\"3*4\"}")
      // Interleaved; the second call comes with no finish_reason: [DONE] completes it.
      fake.script(PATH, sse([delta({ content: "Two sums." }), a0, b0, a1, b1, b2, a2, "data: [DONE]"]))
      const parts = yield* streamParts(settingsFor(fake))
      expect(parts.filter((p) => p.type === "tool-call")).toEqual([
        { type: "tool-call", id: "call_a", name: "calculator", params: { expression: "1+1" } },
        { type: "tool-call", id: "call_b", name: "calculator", params: { expression: "3*4" } }
      ])
      expect(parts.filter((p) => p.type === "tool-params-delta" && p.id === "call_b").map((p) => p.delta).join(""))
        .toBe("{\"expression\":\"3*4\"}")
      // The text closes before the first call starts; the finish comes last.
      expect(parts.map((p) => p.type).slice(1, 5)).toEqual([
        "text-start",
        "text-delta",
        "text-end",
        "tool-params-start"
      ])
      expect(parts.at(-1)).toEqual({ type: "finish", reason: "unknown", usage: noUsage })
    }))

  it.scopedLive("gives a call with empty arguments {} as params, and splits calls that share index 0 by id", () =>
    Effect.gen(function*() {
      const fake = yield* fakeServer
      const clock = (id: string) =>
        delta({ tool_calls: [{ index: 0, id, type: "function", function: { name: "clock", arguments: "" } }] })
      // Some servers number every parallel call 0; a new id is a new call.
      fake.script(
        PATH,
        sse([clock("call_x"), ...callPieces(0, "call_y", "{\"expression\":\"9\"}"), finish("tool_calls")])
      )
      const parts = yield* streamParts(settingsFor(fake))
      expect(parts.filter((p) => String(p.type).startsWith("tool-"))).toEqual([
        { type: "tool-params-start", id: "call_x", name: "clock" },
        { type: "tool-params-end", id: "call_x" },
        { type: "tool-call", id: "call_x", name: "clock", params: {} },
        { type: "tool-params-start", id: "call_y", name: "calculator" },
        { type: "tool-params-delta", id: "call_y", delta: "{\"expression\":\"9\"}" },
        { type: "tool-params-end", id: "call_y" },
        { type: "tool-call", id: "call_y", name: "calculator", params: { expression: "9" } }
      ])
    }))

  it.scopedLive("turns reasoning_content (and reasoning) into reasoning parts before the text", () =>
    Effect.gen(function*() {
      const fake = yield* fakeServer
      fake.script(
        PATH,
        sse([
          delta({ role: "assistant", content: null, reasoning_content: "Think" }),
          delta({ reasoning_content: "ing." }),
          delta({ content: "Answer." }),
          finish("stop"),
          "data: [DONE]"
        ]),
        sse([delta({ reasoning: "Hmm." }), delta({ content: "Ok." }), finish("stop"), "data: [DONE]"])
      )
      expect(yield* streamParts(settingsFor(fake))).toEqual([
        metadata,
        { type: "reasoning-start", id: "id-1" },
        { type: "reasoning-delta", id: "id-1", delta: "Think" },
        { type: "reasoning-delta", id: "id-1", delta: "ing." },
        { type: "reasoning-end", id: "id-1" },
        ...textParts("id-2", "Answer."),
        { type: "finish", reason: "stop", usage: noUsage }
      ])
      expect((yield* streamParts(settingsFor(fake))).slice(1, 4)).toEqual([
        { type: "reasoning-start", id: "id-1" },
        { type: "reasoning-delta", id: "id-1", delta: "Hmm." },
        { type: "reasoning-end", id: "id-1" }
      ])
    }))

  it.scopedLive("maps finish reasons, and accepts a stream with a finish_reason but no [DONE]", () =>
    Effect.gen(function*() {
      const fake = yield* fakeServer
      fake.script(
        PATH,
        sse([delta({ content: "x" }), finish("content_filter")]),
        sse([delta({ content: "x" }), finish("eos_token"), "data: [DONE]"])
      )
      expect((yield* streamParts(settingsFor(fake))).at(-1)).toMatchObject({ reason: "content-filter" })
      expect((yield* streamParts(settingsFor(fake))).at(-1)).toMatchObject({ reason: "unknown" })
    }))

  it.scopedLive("collects the stream into whole parts for generateText", () =>
    Effect.gen(function*() {
      const fake = yield* fakeServer
      fake.script(
        PATH,
        sse([
          delta({ reasoning_content: "Sum it." }),
          delta({ content: "Com" }),
          delta({ content: "puting." }),
          ...callPieces(0, "call_1", "{\"expression\":\"5-3\"}"),
          finish("tool_calls"),
          usage({ prompt_tokens: 3, completion_tokens: 4, total_tokens: 7 }),
          "data: [DONE]"
        ])
      )
      const response = yield* LanguageModel.generateText({ prompt: "5-3?", toolkit, disableToolCallResolution: true })
        .pipe(provide(settingsFor(fake)))
      expect(response.text).toBe("Computing.")
      expect(response.reasoningText).toBe("Sum it.")
      expect(response.toolCalls.map(plain)).toEqual([
        { type: "tool-call", id: "call_1", name: "calculator", params: { expression: "5-3" } }
      ])
      expect(response.finishReason).toBe("tool-calls")
      expect(response.usage.totalTokens).toBe(7)
    }))
})

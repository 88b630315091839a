/**
 * The recorded streams decode, frame by frame, with the providers' own
 * event schemas. The Responses client skips a frame it cannot decode
 * without a word, so a misshapen fake would lose parts silently.
 */
import { AnthropicClient } from "@effect/ai-anthropic"
import { OpenAiClient } from "@effect/ai-openai"
import { describe, expect, it } from "@effect/vitest"
import { Either, Schema } from "effect"
import {
  messagesStream,
  messagesThinking,
  messagesToolUse,
  responsesReasoning,
  responsesStream,
  responsesToolCall
} from "../utils/FakeProviders.ts"

const undecodable = (events: ReadonlyArray<unknown>, schema: Schema.Schema<any, any>) =>
  events.flatMap((event, i) =>
    Either.isLeft(Schema.decodeUnknownEither(schema)(event)) ? [`#${i} ${(event as { type: string }).type}`] : []
  )

describe("recorded provider streams", () => {
  it("every Responses API frame decodes, and each frame is named after its type", () => {
    const answers = [
      responsesStream([
        { kind: "reasoning", summaryPieces: ["Add", " them."] },
        { kind: "message", pieces: ["Hel", "lo"] },
        { kind: "function_call", callId: "call_1", name: "calculator", argsPieces: ["{\"expression\":", "\"2+3\"}"] }
      ]),
      responsesToolCall("call_2", "calculator", ["{}"]),
      responsesReasoning(["r"], ["t"])
    ]
    for (const answer of answers) {
      expect(undecodable(answer.events, OpenAiClient.ResponseStreamEvent)).toEqual([])
      expect(answer.eventNames).toEqual(answer.events.map((e) => (e as { type: string }).type))
    }
    const types = answers[0]!.events.map((e) => (e as { type: string }).type)
    expect(types[0]).toBe("response.created")
    expect(types.at(-1)).toBe("response.completed")
    expect(new Set(types)).toEqual(
      new Set([
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.reasoning_summary_part.added",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.done",
        "response.reasoning_summary_part.done",
        "response.output_item.done",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.completed"
      ])
    )
  })

  it("every Messages API frame decodes, and each frame is named after its type", () => {
    const answers = [
      messagesStream([
        { kind: "thinking", pieces: ["Let me", " add."], signature: "sig" },
        { kind: "text", pieces: ["Hel", "lo"] },
        { kind: "tool_use", id: "toolu_01", name: "calculator", jsonPieces: ["{\"expression\":", "\"2+3\"}"] }
      ]),
      messagesToolUse("toolu_02", "calculator", []),
      messagesThinking(["t"], ["x"])
    ]
    for (const answer of answers) {
      expect(undecodable(answer.events, AnthropicClient.MessageStreamEvent)).toEqual([])
      expect(answer.eventNames).toEqual(answer.events.map((e) => (e as { type: string }).type))
    }
    const types = answers[0]!.events.map((e) => (e as { type: string }).type)
    expect(types.slice(0, 3)).toEqual(["message_start", "content_block_start", "ping"])
    expect(types.slice(-2)).toEqual(["message_delta", "message_stop"])
    const deltas = answers[0]!.events.flatMap((e: any) => e.type === "content_block_delta" ? [e.delta.type] : [])
    expect(new Set(deltas)).toEqual(new Set(["thinking_delta", "signature_delta", "text_delta", "input_json_delta"]))
    expect((answers[0]!.events.at(-2) as any).delta.stop_reason).toBe("tool_use")
  })
})

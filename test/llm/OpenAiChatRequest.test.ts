/**
 * What the openai-chat provider sends: the body of POST /chat/completions
 * (model, settings, messages of every role, tools and tool choice) and the
 * Authorization header only when there is a key.
 */
import { LanguageModel } from "@effect/ai"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Option, Redacted, Stream } from "effect"
import { answered, fakeServer, PATH, provide, settingsFor, streamParts, toolkit } from "./OpenAiChatHarness.ts"

describe("openai-chat requests", () => {
  it.scopedLive("sends the model, the settings, the messages and the tools, with the key as a bearer token", () =>
    Effect.gen(function*() {
      const fake = yield* fakeServer
      fake.script(PATH, answered)
      const settings = settingsFor(fake, {
        apiKey: Option.some(Redacted.make("sk-secret-123")),
        maxOutputTokens: Option.some(256),
        temperature: Option.some(0.2)
      })
      yield* streamParts(settings, [
        { role: "system", content: "Be brief." },
        { role: "user", content: [{ type: "text", text: "What is 2+2" }, { type: "text", text: "and 1/0?" }] },
        {
          role: "assistant",
          content: [
            { type: "reasoning", text: "Two sums." },
            { type: "text", text: "Computing." },
            { type: "tool-call", id: "call_1", name: "calculator", params: { expression: "2+2" } },
            { type: "tool-call", id: "call_2", name: "calculator", params: { expression: "1/0" } }
          ]
        },
        {
          role: "tool",
          content: [
            {
              type: "tool-result",
              id: "call_1",
              name: "calculator",
              isFailure: false,
              result: 4,
              providerExecuted: false
            },
            {
              type: "tool-result",
              id: "call_2",
              name: "calculator",
              isFailure: true,
              result: { error: "division by zero" },
              providerExecuted: false
            }
          ]
        },
        { role: "assistant", content: "4, and 1/0 has no value." },
        { role: "user", content: "Thanks" }
      ])
      const [request] = fake.requestsTo(PATH)
      expect(request?.method).toBe("POST")
      expect(request?.headers.authorization).toBe("Bearer sk-secret-123")
      expect(request?.body).toEqual({
        model: "gpt-test",
        stream: true,
        stream_options: { include_usage: true },
        max_tokens: 256,
        temperature: 0.2,
        messages: [
          { role: "system", content: "Be brief." },
          { role: "user", content: "What is 2+2\nand 1/0?" },
          {
            role: "assistant",
            content: "Computing.",
            tool_calls: [
              {
                id: "call_1",
                type: "function",
                function: { name: "calculator", arguments: "{\"expression\":\"2+2\"}" }
              },
              {
                id: "call_2",
                type: "function",
                function: { name: "calculator", arguments: "{\"expression\":\"1/0\"}" }
              }
            ]
          },
          { role: "tool", tool_call_id: "call_1", content: "4" },
          { role: "tool", tool_call_id: "call_2", content: "{\"error\":\"division by zero\"}" },
          { role: "assistant", content: "4, and 1/0 has no value." },
          { role: "user", content: "Thanks" }
        ],
        tools: [{
          type: "function",
          function: {
            name: "calculator",
            description: "Evaluates an arithmetic expression",
            parameters: {
              type: "object",
              properties: { expression: { type: "string" } },
              required: ["expression"],
              additionalProperties: false
            }
          }
        }, {
          type: "function",
          function: {
            name: "clock",
            description: "Tells the time",
            // No parameters: an empty object.
            parameters: { type: "object", properties: {}, required: [], additionalProperties: false }
          }
        }],
        tool_choice: "auto"
      })
    }))

  it.scopedLive("sends no key, no tools and no sampling settings when there are none", () =>
    Effect.gen(function*() {
      const fake = yield* fakeServer
      fake.script(PATH, answered)
      yield* streamParts(settingsFor(fake), "Hi", false)
      const [request] = fake.requestsTo(PATH)
      expect(request?.headers.authorization).toBeUndefined()
      expect(request?.body).toEqual({
        model: "gpt-test",
        stream: true,
        stream_options: { include_usage: true },
        messages: [{ role: "user", content: "Hi" }]
      })
    }))

  it.scopedLive("maps the tool choice: none, required, one tool, and a subset", () =>
    Effect.gen(function*() {
      const fake = yield* fakeServer
      fake.always(PATH, answered)
      const choices: Array<LanguageModel.ToolChoice<"calculator" | "clock">> = [
        "none",
        "required",
        { tool: "clock" },
        { oneOf: ["clock"] },
        { mode: "required", oneOf: ["calculator"] }
      ]
      for (const toolChoice of choices) {
        yield* LanguageModel.streamText({ prompt: "Hi", toolkit, toolChoice, disableToolCallResolution: true })
          .pipe(
            Stream.runDrain,
            provide(settingsFor(fake))
          )
      }
      expect(fake.requestsTo(PATH).map((r) => [r.body.tool_choice, r.body.tools.map((t: any) => t.function.name)]))
        .toEqual([
          ["none", ["calculator", "clock"]],
          ["required", ["calculator", "clock"]],
          [{ type: "function", function: { name: "clock" } }, ["calculator", "clock"]],
          ["auto", ["clock"]],
          ["required", ["calculator"]]
        ])
    }))
})

import { LanguageModel, Prompt, type Response } from "@effect/ai"
import { describe, expect, it } from "@effect/vitest"
import { Chunk, Duration, Effect, Fiber, Layer, Stream, TestClock } from "effect"
import { builtinModel, BuiltinModelLive } from "../../src/builtin/BuiltinModel.ts"
import { calculator } from "../../src/builtin/BuiltinTools.ts"
import { AppConfigTest } from "../../src/config/AppConfig.ts"
import { ModelInfo } from "../../src/llm/ModelInfo.ts"
import { AUTHOR } from "../../src/llm/SimpleModel.ts"
import { ToolDispatcher, ToolDispatcherLive, Tools } from "../../src/runs/ToolDispatcher.ts"
import { clock } from "../../src/runs/tools/Clock.ts"

const tools = [calculator, clock]
const dispatcher = ToolDispatcherLive.pipe(Layer.provide(Layer.merge(Layer.succeed(Tools, tools), AppConfigTest())))
const model = BuiltinModelLive.pipe(Layer.provide(AppConfigTest()))

const user = (content: string): Prompt.MessageEncoded => ({
  role: "user",
  content,
  options: { [AUTHOR]: { userId: "alice", messageId: "m-1", content } }
})

const turn = (messages: ReadonlyArray<Prompt.MessageEncoded>) =>
  Effect.gen(function*() {
    const { toolkit } = yield* ToolDispatcher
    const parts = yield* LanguageModel.streamText({
      prompt: Prompt.make(messages),
      toolkit,
      disableToolCallResolution: true
    }).pipe(Stream.runCollect)
    return Chunk.toReadonlyArray(parts) as ReadonlyArray<Response.StreamPart<any>>
  })

const textOf = (parts: ReadonlyArray<Response.StreamPart<any>>) =>
  parts.flatMap((p) => p.type === "text-delta" ? [p.delta] : []).join("")

describe("the built-in agent as an @effect/ai LanguageModel", () => {
  it.effect("names itself builtin-agent and calls the calculator through the toolkit", () =>
    Effect.gen(function*() {
      expect((yield* ModelInfo).agent).toBe("builtin-agent")
      const parts = yield* turn([user("what is 12 * (3 + 4)?")])
      const calls = parts.filter((p) => p.type === "tool-call")
      expect(calls).toMatchObject([{ name: "calculator", params: { expression: "12 * (3 + 4)" } }])
      expect(parts.some((p) => p.type === "reasoning-delta")).toBe(true)
      expect(parts.at(-1)).toMatchObject({ type: "finish", reason: "tool-calls" })
    }).pipe(Effect.provide(Layer.merge(model, dispatcher))))

  it.effect("runs a whole turn with the real tools and ends with an answer", () =>
    Effect.gen(function*() {
      const { execute } = yield* ToolDispatcher
      const messages: Array<Prompt.MessageEncoded> = [
        { role: "system", content: "be helpful" },
        user("what is 12 * (3 + 4) and what time is it?")
      ]
      const handle = { context: { threadId: "t", runId: "r", messageId: "m" }, emit: () => Effect.void }
      for (let step = 0; step < 3; step++) {
        const parts = yield* turn(messages)
        const calls = parts.flatMap((p) => p.type === "tool-call" ? [p] : [])
        if (calls.length === 0) {
          expect(step).toBe(1)
          // The test clock starts at the epoch.
          expect(textOf(parts)).toBe("12 * (3 + 4) = 84\nIt is Thursday, 1 January 1970, 00:00:00 (UTC).")
          expect(parts.at(-1)).toMatchObject({ type: "finish", reason: "stop" })
          return
        }
        messages.push({
          role: "assistant",
          content: calls.map((c) => ({ type: "tool-call", id: c.id, name: c.name, params: c.params }))
        })
        const results: Array<Prompt.ToolResultPartEncoded> = []
        for (const call of calls) {
          const outcome = yield* execute({ id: call.id, name: call.name, input: call.params }, handle)
          results.push({
            type: "tool-result",
            id: call.id,
            name: call.name,
            result: outcome.ok ? outcome.output : outcome.error,
            isFailure: !outcome.ok,
            providerExecuted: false
          })
        }
        messages.push({ role: "tool", content: results })
      }
      throw new Error("the agent did not answer")
    }).pipe(Effect.provide(Layer.merge(model, dispatcher))))

  it.effect("streams at its pace: each piece waits BUILTIN_AGENT_PACE_MS", () =>
    Effect.gen(function*() {
      const fiber = yield* Effect.fork(turn([user("hello there")]))
      yield* TestClock.adjust(Duration.millis(40))
      // Not done after one pace: several pieces each wait theirs.
      expect(fiber.unsafePoll()).toBeNull()
      yield* TestClock.adjust(Duration.seconds(10))
      const parts = yield* Fiber.join(fiber)
      expect(textOf(parts).length).toBeGreaterThan(0)
    }).pipe(Effect.provide(Layer.merge(builtinModel(Duration.millis(40)), dispatcher))))
})

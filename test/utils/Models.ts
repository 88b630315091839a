/**
 * Language models for tests: scripted turns, and a gate that holds a run's
 * answer until the test lets it go, so "during a streaming run" is a state
 * a test reaches deterministically rather than by timing.
 */
import { Effect, Stream } from "effect"
import { simpleModelLayer } from "../../src/llm/ModelInfo.ts"
import { type ChatMessage, LlmError, type ModelChunk, type ToolCall } from "../../src/llm/SimpleModel.ts"

/** Counts permits: each gated chunk takes one. */
export class Gate {
  private permits = 0
  private waiters: Array<() => void> = []
  private open = false

  allow(n = 1) {
    this.permits += n
    this.wake()
  }

  openFully() {
    this.open = true
    this.wake()
  }

  private wake() {
    while (this.waiters.length > 0 && (this.open || this.permits > 0)) {
      if (!this.open) this.permits--
      this.waiters.shift()!()
    }
  }

  readonly take: Effect.Effect<void> = Effect.async<void>((resume) => {
    if (this.open) return resume(Effect.void)
    if (this.permits > 0) {
      this.permits--
      return resume(Effect.void)
    }
    const waiter = () => resume(Effect.void)
    this.waiters.push(waiter)
    return Effect.sync(() => {
      this.waiters = this.waiters.filter((w) => w !== waiter)
    })
  })
}

export type Turn = (messages: ReadonlyArray<ChatMessage>) => ReadonlyArray<ModelChunk | "gate" | "fail">

const toStream = (gate: Gate | undefined, items: ReadonlyArray<ModelChunk | "gate" | "fail">) =>
  Stream.fromIterable(items).pipe(
    Stream.mapEffect((item) => {
      if (item === "fail") return Effect.fail(new LlmError({ reason: "the model service answered 500" }))
      if (item === "gate") return gate === undefined ? Effect.succeed(undefined) : Effect.as(gate.take, undefined)
      return Effect.succeed(item)
    }),
    Stream.filter((item): item is ModelChunk => item !== undefined)
  )

/** A model whose every turn is computed by `turn`; the string "gate" waits for a permit of `gate`. */
export const scriptedModel = (turn: Turn, gate?: Gate) =>
  simpleModelLayer("scripted", (request) => Stream.suspend(() => toStream(gate, turn(request.messages))))

export const delta = (text: string): ModelChunk => ({ _tag: "TextDelta", delta: text })
export const thinking = (text: string): ModelChunk => ({ _tag: "Thinking", text })
export const call = (id: string, name: string, input: unknown): ModelChunk => ({
  _tag: "ToolCall",
  call: { id, name, input } satisfies ToolCall
})

const lastIsTool = (messages: ReadonlyArray<ChatMessage>) => messages.at(-1)?.role === "tool"

/** Thinks, then streams `pieces` deltas, each waiting for a permit of the gate. */
export const gatedModel = (gate: Gate, pieces = 5) =>
  scriptedModel(() => [
    thinking("thinking it over"),
    ...Array.from({ length: pieces }, (_, i) => ["gate" as const, delta(`part${i + 1} `)]).flat()
  ], gate)

/** Calls one tool with `input`, then answers with what the tool said. */
export const toolCallingModel = (tool: string, input: unknown) =>
  scriptedModel((messages) => {
    if (!lastIsTool(messages)) return [thinking(`calling ${tool}`), call("call-1", tool, input)]
    const result = messages.at(-1)
    return [delta(`tool said: ${JSON.stringify(result?.role === "tool" ? result.result : null)}`)]
  })

/** Fails mid-answer, as a provider error would. */
export const failingModel = scriptedModel(() => [thinking("starting"), delta("partial "), "fail"])

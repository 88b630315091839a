/**
 * The model of the `agent` workload: a fake streaming language model that
 * answers like a real one paces its tokens. A message
 *
 *   bench-stream deltas=600 rate=50 tool=300
 *
 * is answered with 600 text deltas at 50 per second, and after the 300th a
 * call to the calculator; the deltas after it stream in the second step,
 * once the tool's result is in. Each delta is `@<t>;`, where t is the time
 * (epoch ms, performance clock) the model handed the chunk over: the load
 * generator reads it from the frame that carries it, whatever events the
 * server made of the chunks.
 *
 * One timer drives every run (a 2 ms tick): 1,000 runs at 50 deltas/s are
 * 50,000 chunks a second, and a timer or a fiber sleep per chunk would cost
 * the server more than the model it stands for. Each run's first chunk is
 * due a random part of its interval after it starts, so the runs' chunks
 * spread over time rather than arriving in bursts.
 */
import { Effect, Stream } from "effect"
import { simpleModelLayer } from "../../src/llm/ModelInfo.ts"
import type { ModelChunk, ModelRequest } from "../../src/llm/SimpleModel.ts"
import { now } from "./common.ts"

const TICK_MS = 2

interface Pacer {
  due: number
  readonly interval: number
  remaining: number
  readonly push: (chunk: ModelChunk) => void
  readonly end: () => void
}

const pacers = new Set<Pacer>()
let timer: ReturnType<typeof setInterval> | undefined

const tick = () => {
  const t = now()
  for (const pacer of pacers) {
    while (pacer.remaining > 0 && pacer.due <= t) {
      pacer.remaining--
      // Stamped with the time it was due: a server whose event loop is late takes the lag on itself.
      pacer.push({ _tag: "TextDelta", delta: `@${pacer.due.toFixed(3)};` })
      pacer.due += pacer.interval
    }
    if (pacer.remaining === 0) {
      pacers.delete(pacer)
      pacer.end()
    }
  }
  if (pacers.size === 0 && timer !== undefined) {
    clearInterval(timer)
    timer = undefined
  }
}

/** `count` deltas at `rate` per second, then `after` (a tool call, or nothing). */
const paced = (count: number, rate: number, after: ReadonlyArray<ModelChunk>): Stream.Stream<ModelChunk> =>
  Stream.asyncPush<ModelChunk>((emit) =>
    Effect.sync(() => {
      const interval = 1000 / rate
      const pacer: Pacer = {
        due: now() + Math.random() * interval,
        interval,
        remaining: count,
        push: (chunk) => void emit.single(chunk),
        end: () => {
          for (const chunk of after) void emit.single(chunk)
          void emit.end()
        }
      }
      if (count === 0) return pacer.end()
      pacers.add(pacer)
      timer ??= setInterval(tick, TICK_MS)
    }), { bufferSize: "unbounded" })

const numberIn = (text: string, key: string, fallback: number) => {
  const match = new RegExp(`${key}=(\\d+)`).exec(text)
  return match === null ? fallback : Number(match[1])
}

const turn = (request: ModelRequest): Stream.Stream<ModelChunk> => {
  const lastUser = [...request.messages].reverse().find((m) => m.role === "user")
  const content = lastUser?.role === "user" ? lastUser.content : ""
  const deltas = numberIn(content, "deltas", 100)
  const rate = Math.max(1, numberIn(content, "rate", 50))
  const toolAt = Math.min(deltas, numberIn(content, "tool", Math.floor(deltas / 2)))
  const afterTool = request.messages[request.messages.length - 1]?.role === "tool"
  if (afterTool) return paced(deltas - toolAt, rate, [{ _tag: "Usage", inputTokens: 10, outputTokens: deltas }])
  const call: ModelChunk = {
    _tag: "ToolCall",
    call: { id: `call-${Math.random().toString(36).slice(2)}`, name: "calculator", input: { expression: "6*7" } }
  }
  return paced(toolAt, rate, [call])
}

/** The fake model as a model layer (LanguageModel and ModelInfo). */
export const StreamModelLive = simpleModelLayer("bench-stream", turn, "bench")

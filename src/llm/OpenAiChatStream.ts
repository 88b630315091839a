/**
 * The answer of the Chat Completions API, read as @effect/ai stream parts:
 * each SSE `data:` line is a `chat.completion.chunk` whose deltas open,
 * extend and close text, reasoning and tool-call parts; `[DONE]` ends it.
 * Tool calls arrive in pieces keyed by `index` and are emitted whole once
 * the model is done with them. The finish part comes last, after the
 * usage chunk that follows the one with the finish_reason.
 */
import { IdGenerator, Tool } from "@effect/ai"
import type { AiError, Response } from "@effect/ai"
import type * as Sse from "@effect/experimental/Sse"
import { Effect, Stream } from "effect"
import { broken, clip, malformed } from "./OpenAiChatErrors.ts"

interface ToolCallDelta {
  readonly index?: number
  readonly id?: string | null
  readonly function?: { readonly name?: string | null; readonly arguments?: string | null } | null
}

interface ChatUsage {
  readonly prompt_tokens?: number
  readonly completion_tokens?: number
  readonly total_tokens?: number
  readonly completion_tokens_details?: { readonly reasoning_tokens?: number } | null
  readonly prompt_tokens_details?: { readonly cached_tokens?: number } | null
}

interface ChatChunk {
  readonly id?: string
  readonly model?: string
  readonly created?: number
  readonly object?: string
  readonly message?: unknown
  readonly error?: unknown
  readonly usage?: ChatUsage | null
  readonly choices?: ReadonlyArray<{
    readonly index?: number
    readonly finish_reason?: string | null
    readonly delta?: {
      readonly content?: string | null
      readonly reasoning_content?: string | null
      readonly reasoning?: string | null
      readonly tool_calls?: ReadonlyArray<ToolCallDelta> | null
    } | null
  }>
}

interface ToolCallState {
  id: string | undefined
  name: string
  args: string
  started: boolean
}

const finishReasons: Record<string, Response.FinishReason> = {
  stop: "stop",
  length: "length",
  tool_calls: "tool-calls",
  content_filter: "content-filter"
}

const num = (value: unknown): number | undefined => typeof value === "number" ? value : undefined

const toUsage = (usage: ChatUsage | undefined): Response.FinishPartEncoded["usage"] => {
  const inputTokens = num(usage?.prompt_tokens)
  const outputTokens = num(usage?.completion_tokens)
  const reasoningTokens = num(usage?.completion_tokens_details?.reasoning_tokens)
  const cachedInputTokens = num(usage?.prompt_tokens_details?.cached_tokens)
  return {
    inputTokens,
    outputTokens,
    totalTokens: num(usage?.total_tokens) ??
      (inputTokens !== undefined && outputTokens !== undefined ? inputTokens + outputTokens : undefined),
    ...(reasoningTokens === undefined ? {} : { reasoningTokens }),
    ...(cachedInputTokens === undefined ? {} : { cachedInputTokens })
  }
}

/** What an error object inside the stream says, in one line. */
const describeError = (error: unknown): string => {
  if (typeof error === "string") return clip(error)
  if (typeof error !== "object" || error === null) return clip(JSON.stringify(error))
  const { code, message, type } = error as Record<string, unknown>
  const detail = [type, code].filter((x) => typeof x === "string" || typeof x === "number").join(", ")
  const text = typeof message === "string" ? message : JSON.stringify(error)
  return clip(detail === "" ? text : `${text} (${detail})`)
}

type Part = Response.StreamPartEncoded

/** The state of one answer: which parts are open, the tool calls so far, the finish reason and usage. */
export class ChunkDecoder {
  private metadataSent = false
  private text: string | undefined
  private reasoning: string | undefined
  private readonly calls = new Map<number, ToolCallState>()
  private finishReason: string | undefined
  private usage: ChatUsage | undefined

  constructor(private readonly newId: Effect.Effect<string>) {}

  /** The parts of one `data:` line. */
  data(line: string): Effect.Effect<Array<Part>, AiError.AiError> {
    return Effect.suspend(() => {
      let chunk: ChatChunk
      try {
        chunk = JSON.parse(line)
      } catch (cause) {
        return Effect.fail(malformed(`a stream line is not JSON: ${clip(line)}`, cause))
      }
      if (typeof chunk !== "object" || chunk === null) {
        return Effect.fail(malformed(`a stream line is not a chunk object: ${clip(line)}`))
      }
      if (chunk.error !== undefined && chunk.error !== null) {
        return Effect.fail(broken(`the provider reported an error mid-stream: ${describeError(chunk.error)}`))
      }
      if (chunk.object === "error") {
        return Effect.fail(broken(`the provider reported an error mid-stream: ${describeError(chunk)}`))
      }
      return this.chunk(chunk)
    })
  }

  private chunk(chunk: ChatChunk): Effect.Effect<Array<Part>, AiError.AiError> {
    return Effect.gen(this, function*() {
      const parts: Array<Part> = []
      if (!this.metadataSent) {
        this.metadataSent = true
        parts.push({
          type: "response-metadata",
          id: chunk.id,
          modelId: chunk.model,
          timestamp: typeof chunk.created === "number" && Number.isFinite(new Date(chunk.created * 1000).getTime())
            ? new Date(chunk.created * 1000).toISOString()
            : undefined
        })
      }
      if (chunk.usage !== undefined && chunk.usage !== null) this.usage = chunk.usage
      // Only one choice is asked for (no `n`).
      for (const choice of chunk.choices ?? []) {
        if ((choice.index ?? 0) !== 0) continue
        const delta = choice.delta ?? {}
        const reasoning = delta.reasoning_content ?? delta.reasoning
        if (typeof reasoning === "string" && reasoning !== "") {
          this.closeText(parts)
          if (this.reasoning === undefined) {
            this.reasoning = yield* this.newId
            parts.push({ type: "reasoning-start", id: this.reasoning })
          }
          parts.push({ type: "reasoning-delta", id: this.reasoning, delta: reasoning })
        }
        if (typeof delta.content === "string" && delta.content !== "") {
          this.closeReasoning(parts)
          if (this.text === undefined) {
            this.text = yield* this.newId
            parts.push({ type: "text-start", id: this.text })
          }
          parts.push({ type: "text-delta", id: this.text, delta: delta.content })
        }
        for (const piece of delta.tool_calls ?? []) {
          this.closeText(parts)
          this.closeReasoning(parts)
          yield* this.toolCallPiece(piece, parts)
        }
        if (typeof choice.finish_reason === "string" && choice.finish_reason !== "") {
          this.finishReason = choice.finish_reason
          yield* this.closeAll(parts)
        }
      }
      return parts
    })
  }

  private toolCallPiece(piece: ToolCallDelta, parts: Array<Part>): Effect.Effect<void, AiError.AiError> {
    return Effect.gen(this, function*() {
      const index = typeof piece.index === "number" ? piece.index : Math.max(0, this.calls.size - 1)
      const id = typeof piece.id === "string" && piece.id !== "" ? piece.id : undefined
      let call = this.calls.get(index)
      // Some servers give every call index 0: a new id at a known index is a new call.
      if (call !== undefined && id !== undefined && call.id !== undefined && call.id !== id) {
        yield* this.closeCall(index, call, parts)
        call = undefined
      }
      if (call === undefined) {
        call = { id, name: "", args: "", started: false }
        this.calls.set(index, call)
      }
      if (call.id === undefined && id !== undefined) call.id = id
      const name = piece.function?.name
      if (!call.started && typeof name === "string") call.name += name
      const args = piece.function?.arguments
      const delta = typeof args === "string" ? args : ""
      call.args += delta
      if (!call.started && call.name !== "") {
        call.started = true
        call.id ??= yield* this.newId
        parts.push({ type: "tool-params-start", id: call.id, name: call.name })
        if (call.args !== "") parts.push({ type: "tool-params-delta", id: call.id, delta: call.args })
      } else if (call.started && delta !== "") {
        parts.push({ type: "tool-params-delta", id: call.id!, delta })
      }
    })
  }

  private closeText(parts: Array<Part>): void {
    if (this.text === undefined) return
    parts.push({ type: "text-end", id: this.text })
    this.text = undefined
  }

  private closeReasoning(parts: Array<Part>): void {
    if (this.reasoning === undefined) return
    parts.push({ type: "reasoning-end", id: this.reasoning })
    this.reasoning = undefined
  }

  private closeCall(index: number, call: ToolCallState, parts: Array<Part>): Effect.Effect<void, AiError.AiError> {
    this.calls.delete(index)
    if (!call.started || call.id === undefined) {
      return Effect.fail(malformed(`a tool call (index ${index}) came without a function name`))
    }
    let params: unknown = {}
    if (call.args.trim() !== "") {
      try {
        params = Tool.unsafeSecureJsonParse(call.args)
      } catch (cause) {
        return Effect.fail(
          malformed(
            `the arguments of tool call ${call.name} (${call.id}) are not valid JSON: ${clip(call.args)}`,
            cause
          )
        )
      }
    }
    parts.push({ type: "tool-params-end", id: call.id })
    parts.push({ type: "tool-call", id: call.id, name: call.name, params })
    return Effect.void
  }

  private closeAll(parts: Array<Part>): Effect.Effect<void, AiError.AiError> {
    this.closeReasoning(parts)
    this.closeText(parts)
    const open = [...this.calls.entries()].sort(([a], [b]) => a - b)
    return Effect.forEach(open, ([index, call]) => this.closeCall(index, call, parts), { discard: true })
  }

  /** The last parts, once the stream is over: `done` when it ended with `[DONE]`. */
  end(done: boolean): Effect.Effect<Array<Part>, AiError.AiError> {
    return Effect.suspend(() => {
      if (!done && this.finishReason === undefined) {
        return Effect.fail(broken("the stream ended before [DONE] and without a finish_reason"))
      }
      const parts: Array<Part> = []
      return Effect.map(this.closeAll(parts), (): Array<Part> => [...parts, {
        type: "finish",
        reason: finishReasons[this.finishReason ?? ""] ?? "unknown",
        usage: toUsage(this.usage)
      }])
    })
  }
}

/** The stream parts of the SSE events of one answer. */
export const decodeEvents = <R>(
  events: Stream.Stream<Sse.Event, AiError.AiError, R>
): Stream.Stream<Part, AiError.AiError, R | IdGenerator.IdGenerator> =>
  Stream.unwrap(Effect.map(IdGenerator.IdGenerator, (ids) => {
    const decoder = new ChunkDecoder(ids.generateId())
    let done = false
    return events.pipe(
      Stream.filter((event) => event.data.trim() !== ""),
      Stream.takeWhile((event) => {
        if (event.data.trim() === "[DONE]") done = true
        return !done
      }),
      Stream.mapEffect((event) => decoder.data(event.data)),
      Stream.concat(Stream.suspend(() => Stream.fromEffect(decoder.end(done)))),
      Stream.flattenIterables
    )
  }))

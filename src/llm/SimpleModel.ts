/**
 * A language model from a plain function: the conversation as a list of
 * messages in, chunks (thinking, answer deltas, tool calls, usage) out.
 * `makeSimpleModel` turns such a function into an @effect/ai LanguageModel,
 * so the built-in agent and the scripted models of tests and scripts are
 * implementations of the same interface as the real providers.
 */
import { AiError, LanguageModel, type Prompt, type Response, Tool as AiTool } from "@effect/ai"
import { Data, Effect, Stream } from "effect"

export interface ToolCall {
  readonly id: string
  readonly name: string
  readonly input: unknown
}

export type ChatMessage =
  | { readonly role: "system"; readonly content: string }
  | { readonly role: "user"; readonly content: string; readonly userId: string; readonly messageId: string }
  | { readonly role: "assistant"; readonly content: string; readonly toolCalls: ReadonlyArray<ToolCall> }
  | {
    readonly role: "tool"
    readonly toolCallId: string
    readonly name: string
    /** The tool's output, or its error message when `isError`. */
    readonly result: unknown
    readonly isError: boolean
  }

/** A tool as the model sees it: a name, what it does, and a JSON Schema of its input. */
export interface ToolSpec {
  readonly name: string
  readonly description: string
  readonly parameters: Record<string, unknown>
}

export type ModelChunk =
  | { readonly _tag: "Thinking"; readonly text: string }
  | { readonly _tag: "TextDelta"; readonly delta: string }
  | { readonly _tag: "ToolCall"; readonly call: ToolCall }
  | { readonly _tag: "Usage"; readonly inputTokens: number; readonly outputTokens: number }

export class LlmError extends Data.TaggedError("LlmError")<{
  readonly reason: string
  readonly cause?: unknown
}> {}

export interface ModelRequest {
  readonly messages: ReadonlyArray<ChatMessage>
  readonly tools: ReadonlyArray<ToolSpec>
}

/**
 * The key of the provider options in which the run loop keeps, on each user message, who wrote it and
 * its text as written (the content sent to a real model may name the author).
 */
export const AUTHOR = "agentChat"

export interface Author {
  readonly userId: string
  readonly messageId: string
  readonly content: string
}

const textOf = (parts: ReadonlyArray<{ readonly type: string }>): string =>
  parts.map((part) => part.type === "text" ? (part as Prompt.TextPart).text : "").join("")

/** The prompt as plain messages. */
export const toChatMessages = (prompt: Prompt.Prompt): Array<ChatMessage> =>
  prompt.content.flatMap((message): Array<ChatMessage> => {
    switch (message.role) {
      case "system":
        return [{ role: "system", content: message.content }]
      case "user": {
        const author = message.options[AUTHOR] as Author | undefined
        return [{
          role: "user",
          content: author?.content ?? textOf(message.content),
          userId: author?.userId ?? "user",
          messageId: author?.messageId ?? ""
        }]
      }
      case "assistant":
        return [{
          role: "assistant",
          content: textOf(message.content),
          toolCalls: message.content.flatMap((part) =>
            part.type === "tool-call" ? [{ id: part.id, name: part.name, input: part.params }] : []
          )
        }]
      case "tool":
        return message.content.map((part): ChatMessage => ({
          role: "tool",
          toolCallId: part.id,
          name: part.name,
          result: part.result,
          isError: part.isFailure
        }))
    }
  })

const specOf = (tool: AiTool.Any): ToolSpec => ({
  name: tool.name,
  description: AiTool.getDescription(tool as any) ?? "",
  parameters: AiTool.getJsonSchema(tool as any) as unknown as Record<string, unknown>
})

/** The chunks of one turn as @effect/ai stream parts: each run of text or thinking is one block. */
const toParts = (chunks: Stream.Stream<ModelChunk, LlmError>, model: string) =>
  Stream.suspend(() => {
    let open: "text" | "reasoning" | undefined
    let block = 0
    let calls = 0
    let usage = { inputTokens: undefined as number | undefined, outputTokens: undefined as number | undefined }
    const close = (): Array<Response.StreamPartEncoded> => {
      if (open === undefined) return []
      const part: Response.StreamPartEncoded = { type: `${open}-end`, id: `${block}` }
      open = undefined
      return [part]
    }
    const into = (kind: "text" | "reasoning"): Array<Response.StreamPartEncoded> => {
      if (open === kind) return []
      const closed = close()
      open = kind
      block++
      return [...closed, { type: `${kind}-start`, id: `${block}` }]
    }
    return chunks.pipe(
      Stream.mapConcat((chunk): Array<Response.StreamPartEncoded> => {
        switch (chunk._tag) {
          case "Thinking":
            return [...into("reasoning"), { type: "reasoning-delta", id: `${block}`, delta: chunk.text }]
          case "TextDelta":
            return [...into("text"), { type: "text-delta", id: `${block}`, delta: chunk.delta }]
          case "ToolCall":
            calls++
            // Announced first, as the real providers do: a call to a tool the model does not have can then
            // still be told apart (see ModelCall).
            return [
              ...close(),
              { type: "tool-params-start", id: chunk.call.id, name: chunk.call.name },
              { type: "tool-params-delta", id: chunk.call.id, delta: JSON.stringify(chunk.call.input) ?? "{}" },
              { type: "tool-params-end", id: chunk.call.id },
              {
                type: "tool-call",
                id: chunk.call.id,
                name: chunk.call.name,
                params: chunk.call.input,
                providerExecuted: false
              }
            ]
          case "Usage":
            usage = { inputTokens: chunk.inputTokens, outputTokens: chunk.outputTokens }
            return []
        }
      }),
      Stream.concat(Stream.suspend(() =>
        Stream.fromIterable<Response.StreamPartEncoded>([...close(), {
          type: "finish",
          reason: calls > 0 ? "tool-calls" : "stop",
          usage: {
            ...usage,
            totalTokens: usage.inputTokens === undefined || usage.outputTokens === undefined
              ? undefined
              : usage.inputTokens + usage.outputTokens
          }
        }])
      )),
      Stream.mapError((error) =>
        new AiError.UnknownError({ module: model, method: "streamText", description: error.reason })
      ),
      // One part per chunk: @effect/ai decodes a chunk at once, and a call to a tool the model was not
      // given must fail alone, after its announcement has been seen (see ModelCall).
      Stream.rechunk(1)
    )
  })

/** An @effect/ai LanguageModel whose every turn is `turn` of the conversation so far. */
export const makeSimpleModel = (
  name: string,
  turn: (request: ModelRequest) => Stream.Stream<ModelChunk, LlmError>
): Effect.Effect<LanguageModel.Service> => {
  const stream = (options: LanguageModel.ProviderOptions) =>
    toParts(
      Stream.suspend(() => turn({ messages: toChatMessages(options.prompt), tools: options.tools.map(specOf) })),
      name
    )
  return LanguageModel.make({
    streamText: stream,
    generateText: (options) =>
      Stream.runCollect(stream(options)).pipe(Effect.map((parts) => {
        const content: Array<Response.PartEncoded> = []
        for (const part of parts) {
          if (part.type === "text-delta") content.push({ type: "text", text: part.delta })
          else if (part.type === "reasoning-delta") content.push({ type: "reasoning", text: part.delta })
          else if (part.type === "tool-call" || part.type === "finish") content.push(part)
        }
        return content
      }))
  })
}

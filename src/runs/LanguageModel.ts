/**
 * LanguageModel: what the supervisor asks an agent's model. A provider
 * streams chunks (thinking, answer deltas, tool calls); the supervisor
 * turns them into events and runs the tools. The built-in offline agent
 * implements it, and real providers slot in as other layers.
 */
import { Context, Data, type Stream } from "effect"

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

export class LlmError extends Data.TaggedError("LlmError")<{
  readonly reason: string
  readonly cause?: unknown
}> {}

export interface ModelRequest {
  readonly messages: ReadonlyArray<ChatMessage>
  readonly tools: ReadonlyArray<ToolSpec>
}

export class LanguageModel extends Context.Tag("agent-chat/LanguageModel")<LanguageModel, {
  /** The agent's name, as `agent_started` reports it. */
  readonly name: string
  /** One model turn: thinking, answer text and tool calls, in the order the model produces them. */
  readonly stream: (request: ModelRequest) => Stream.Stream<ModelChunk, LlmError>
}>() {}

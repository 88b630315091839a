/**
 * A tool the agent may call. Tools are only ever run by the ToolDispatcher,
 * which is what guarantees `tool_executing` / `tool_completed` around each.
 */
import { Data, Effect, ParseResult, Schema } from "effect"
import type { ToolSpec } from "./LanguageModel.ts"

export interface ToolContext {
  readonly threadId: string
  readonly runId: string
  /** The user message that started the run. */
  readonly messageId: string
}

export class ToolError extends Data.TaggedError("ToolError")<{ readonly message: string }> {}

export interface Tool extends ToolSpec {
  readonly run: (input: unknown, context: ToolContext) => Effect.Effect<unknown, ToolError>
}

/** A tool's input, decoded with its Schema: a model that sends a bad input gets a clear tool error. */
export const decodeInput = <A, I>(schema: Schema.Schema<A, I>, input: unknown) =>
  Schema.decodeUnknown(schema)(input).pipe(
    Effect.mapError((error) =>
      new ToolError({ message: `invalid input: ${ParseResult.TreeFormatter.formatErrorSync(error)}` })
    )
  )

/** Input and output shapes of the built-in tools, shared by the tools and the built-in agent. */
export interface CalculatorInput {
  readonly expression: string
}
export interface CalculatorOutput {
  readonly expression: string
  readonly result: number
}
export interface ClockInput {
  /** An IANA time zone such as "Europe/Paris"; UTC when absent. */
  readonly timezone?: string
}
export interface ClockOutput {
  readonly iso: string
  readonly timezone: string
  /** e.g. "Sunday, 22 November 2026, 20:51:46" in that zone. */
  readonly local: string
  readonly weekday: string
}
export interface SearchThreadInput {
  readonly query: string
  readonly limit?: number
}
export interface SearchThreadOutput {
  readonly query: string
  readonly matches: ReadonlyArray<{
    readonly message_id: string
    readonly user_id: string
    readonly content: string
    readonly created_at: string
  }>
}

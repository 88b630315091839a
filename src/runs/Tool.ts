/**
 * A tool the agent may call. Tools are only ever run by the ToolDispatcher,
 * which is what guarantees `tool_executing` / `tool_completed` around each.
 * A tool is defined from the Schema of its input: the JSON Schema the model
 * sees and the decoding of what the model sends both come from it.
 */
import { Tool as AiTool } from "@effect/ai"
import { Data, Effect, ParseResult, Schema } from "effect"
import type { ToolSpec } from "../llm/SimpleModel.ts"

export interface ToolContext {
  readonly threadId: string
  readonly runId: string
  /** The user message that started the run. */
  readonly messageId: string
}

export class ToolError extends Data.TaggedError("ToolError")<{ readonly message: string }> {}

export interface Tool extends ToolSpec {
  /** Runs the tool on the model's input as sent (tools made by `defineTool` decode it first). */
  readonly run: (input: unknown, context: ToolContext) => Effect.Effect<unknown, ToolError>
}

/** A tool's input, decoded with its Schema: a model that sends a bad input gets a clear tool error. */
export const decodeInput = <A, I>(schema: Schema.Schema<A, I>, input: unknown) =>
  Schema.decodeUnknown(schema)(input).pipe(
    Effect.mapError((error) =>
      new ToolError({ message: `invalid input: ${ParseResult.TreeFormatter.formatErrorSync(error)}` })
    )
  )

/** A tool from the Schema of its input, its one source for the model's JSON Schema and for decoding. */
export const defineTool = <A, I>(spec: {
  readonly name: string
  readonly description: string
  readonly input: Schema.Schema<A, I>
  readonly run: (input: A, context: ToolContext) => Effect.Effect<unknown, ToolError>
}): Tool => ({
  name: spec.name,
  description: spec.description,
  parameters: AiTool.getJsonSchemaFromSchemaAst(spec.input.ast) as unknown as Record<string, unknown>,
  run: (input, context) => Effect.flatMap(decodeInput(spec.input, input), (decoded) => spec.run(decoded, context))
})

/**
 * The tool as @effect/ai declares it to a provider: its JSON Schema as is, and an input accepted as any
 * object, so that a bad input reaches the dispatcher and becomes a tool error the model can correct,
 * rather than a malformed answer that ends the run.
 */
export const toAiTool = (tool: Tool) =>
  AiTool.make(tool.name, { description: tool.description, success: Schema.Unknown, failure: Schema.Unknown })
    .setParameters(
      Schema.Record({ key: Schema.String, value: Schema.Unknown }).annotations({ jsonSchema: tool.parameters }) as any
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

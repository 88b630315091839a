/**
 * The built-in tools: the calculator (the offline agent's own, though any
 * model may call it), the clock and search_thread.
 */
import { Effect, Either, Layer, Schema } from "effect"
import { type CalculatorOutput, defineTool, type Tool, ToolError } from "../runs/Tool.ts"
import { Tools } from "../runs/ToolDispatcher.ts"
import { clock } from "../runs/tools/Clock.ts"
import { searchThread } from "../runs/tools/SearchThread.ts"
import { Threads } from "../threads/Threads.ts"
import { evaluate } from "./Calculator.ts"

const CalculatorInput = Schema.Struct({
  expression: Schema.String.pipe(Schema.maxLength(500)).annotations({ description: "for example (12 + 3) * 4 / 2" })
})

export const calculator: Tool = defineTool({
  name: "calculator",
  description:
    "Evaluates an arithmetic expression: + - * / % ^, parentheses, sqrt, abs, round, ln, log, sin, cos, tan, min, max, pi, e.",
  input: CalculatorInput,
  run: ({ expression }) =>
    Either.match(evaluate(expression), {
      onLeft: (message) => Effect.fail(new ToolError({ message })),
      onRight: (result) => Effect.succeed<CalculatorOutput>({ expression, result })
    })
})

export const BuiltinToolsLive: Layer.Layer<Tools, never, Threads> = Layer.effect(
  Tools,
  Effect.map(Threads, (threads) => [calculator, clock, searchThread(threads)])
)

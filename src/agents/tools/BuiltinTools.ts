/**
 * The built-in tools: calculator, clock and search_thread. Inputs are
 * decoded with Schema, so a model that sends a bad input gets a clear tool
 * error instead of a crash.
 */
import { Clock, Effect, Either, Layer, ParseResult, Schema } from "effect"
import { Threads } from "../../database/Threads.ts"
import { Text } from "../../domain/Frames.ts"
import type { CalculatorOutput, ClockOutput, SearchThreadOutput, Tool } from "../../runs/Tool.ts"
import { ToolError } from "../../runs/Tool.ts"
import { Tools } from "../../runs/ToolDispatcher.ts"
import { evaluate } from "../Calculator.ts"

const decodeInput = <A, I>(schema: Schema.Schema<A, I>, input: unknown) =>
  Schema.decodeUnknown(schema)(input).pipe(
    Effect.mapError((error) =>
      new ToolError({ message: `invalid input: ${ParseResult.TreeFormatter.formatErrorSync(error)}` })
    )
  )

const CalculatorInput = Schema.Struct({ expression: Schema.String.pipe(Schema.maxLength(500)) })

export const calculator: Tool = {
  name: "calculator",
  description:
    "Evaluates an arithmetic expression: + - * / % ^, parentheses, sqrt, abs, round, ln, log, sin, cos, tan, min, max, pi, e.",
  parameters: {
    type: "object",
    properties: { expression: { type: "string", description: "for example (12 + 3) * 4 / 2" } },
    required: ["expression"]
  },
  run: (input) =>
    Effect.flatMap(decodeInput(CalculatorInput, input), ({ expression }) =>
      Either.match(evaluate(expression), {
        onLeft: (message) => Effect.fail(new ToolError({ message })),
        onRight: (result) => Effect.succeed<CalculatorOutput>({ expression, result })
      }))
}

const ClockInput = Schema.Struct({ timezone: Schema.optional(Schema.String.pipe(Schema.maxLength(64))) })

export const clock: Tool = {
  name: "clock",
  description: "Tells the current date and time, in UTC or in an IANA time zone such as Europe/Paris.",
  parameters: {
    type: "object",
    properties: { timezone: { type: "string", description: "IANA time zone; UTC when absent" } }
  },
  run: (input) =>
    Effect.gen(function*() {
      const { timezone = "UTC" } = yield* decodeInput(ClockInput, input)
      const now = new Date(yield* Clock.currentTimeMillis)
      const format = yield* Effect.try({
        try: () =>
          new Intl.DateTimeFormat("en-GB", {
            timeZone: timezone,
            weekday: "long",
            day: "numeric",
            month: "long",
            year: "numeric",
            hour: "2-digit",
            minute: "2-digit",
            second: "2-digit",
            hour12: false
          }),
        catch: () => new ToolError({ message: `unknown time zone "${timezone}"` })
      })
      const weekday = new Intl.DateTimeFormat("en-GB", { timeZone: timezone, weekday: "long" }).format(now)
      return {
        iso: now.toISOString(),
        timezone,
        local: format.format(now).replace(" at ", ", "),
        weekday
      } satisfies ClockOutput
    })
}

// Text, not String: the query's words become ILIKE parameters, and a NUL would fail the search as if the
// database were down. The word split below drops it today; the schema says so whatever the split becomes.
const SearchInput = Schema.Struct({
  query: Text.pipe(Schema.maxLength(500)),
  limit: Schema.optional(Schema.Int.pipe(Schema.between(1, 20)))
})

const terms = (query: string) => query.toLowerCase().split(/[^\p{L}\p{N}]+/u).filter((t) => t.length > 0).slice(0, 8)

export const searchThread = (threads: Threads): Tool => ({
  name: "search_thread",
  description: "Searches the earlier messages of this thread for words; an empty query lists the latest ones.",
  parameters: {
    type: "object",
    properties: {
      query: { type: "string", description: "words that the messages must contain" },
      limit: { type: "integer", minimum: 1, maximum: 20 }
    },
    required: ["query"]
  },
  run: (input, context) =>
    Effect.gen(function*() {
      const { limit = 5, query } = yield* decodeInput(SearchInput, input)
      const matches = yield* threads.searchMessages({
        threadId: context.threadId,
        terms: terms(query),
        excludeMessageId: context.messageId,
        limit
      }).pipe(Effect.mapError(() => new ToolError({ message: "the thread history is unavailable" })))
      return { query, matches } satisfies SearchThreadOutput
    })
})

export const BuiltinToolsLive: Layer.Layer<Tools, never, Threads> = Layer.effect(
  Tools,
  Effect.map(Threads, (threads) => [calculator, clock, searchThread(threads)])
)

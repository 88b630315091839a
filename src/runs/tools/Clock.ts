/** The clock tool: the current date and time, in UTC or in an IANA time zone. */
import { Clock, Effect, Schema } from "effect"
import { type ClockOutput, defineTool, type Tool, ToolError } from "../Tool.ts"

const ClockInput = Schema.Struct({
  timezone: Schema.optional(
    Schema.String.pipe(Schema.maxLength(64)).annotations({ description: "IANA time zone; UTC when absent" })
  )
})

export const clock: Tool = defineTool({
  name: "clock",
  description: "Tells the current date and time, in UTC or in an IANA time zone such as Europe/Paris.",
  input: ClockInput,
  run: ({ timezone = "UTC" }) =>
    Effect.gen(function*() {
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
})

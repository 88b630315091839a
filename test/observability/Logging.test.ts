import { describe, expect, it } from "@effect/vitest"
import { Effect, Logger } from "effect"
import { jsonLogger } from "../../src/observability/Logging.ts"

const capture = <A, E>(effect: Effect.Effect<A, E>) => {
  const lines: Array<string> = []
  return Effect.provide(effect, Logger.replace(Logger.defaultLogger, jsonLogger((line) => lines.push(line)))).pipe(
    Effect.map(() =>
      lines.map((line) => {
        expect(line.endsWith("\n")).toBe(true)
        return JSON.parse(line)
      })
    )
  )
}

describe("JSON logs", () => {
  it.effect("one flat object per line: level, time, message, then the annotations in scope", () =>
    Effect.gen(function*() {
      const [line] = yield* capture(
        Effect.logWarning("run ended").pipe(
          Effect.annotateLogs({ component: "supervisor", thread_id: "t1", run_id: "r1", duration_ms: 12 }),
          Effect.annotateLogs({ connection_id: "c1", user_id: "alice" })
        )
      )
      expect(Object.keys(line!).slice(0, 3)).toEqual(["level", "time", "message"])
      expect(line).toMatchObject({
        level: "warn",
        message: "run ended",
        component: "supervisor",
        connection_id: "c1",
        user_id: "alice",
        thread_id: "t1",
        run_id: "r1",
        duration_ms: 12
      })
      expect(new Date(line!.time).toISOString()).toBe(line!.time)
    }))

  it.effect("renders the cause, and no annotation can overwrite level, time or message", () =>
    Effect.gen(function*() {
      const [line] = yield* capture(
        Effect.fail(new Error("boom")).pipe(
          Effect.catchAllCause((cause) => Effect.logError("frame handling failed", cause)),
          Effect.annotateLogs({ message: "spoofed", level: "debug", time: "never" })
        )
      )
      expect(line).toMatchObject({ level: "error", message: "frame handling failed" })
      expect(line!.time).not.toBe("never")
      expect(line!.cause).toMatch(/Error: boom/)
    }))
})

/**
 * ToolDispatcher: the only way a run executes a tool. It emits
 * `tool_executing` before and exactly one `tool_completed` after, with the
 * duration and the output or the error, even when the tool fails, times
 * out or the run is cancelled mid-call. A failing tool never fails the run;
 * one that does not answer within TOOL_TIMEOUT_MS is reported `timedOut`,
 * and the agent loop then ends the run with `timeout`.
 */
import { Cause, Clock, Context, Duration, Effect, Exit, Layer, Metric, Option } from "effect"
import { AppConfig } from "../config/AppConfig.ts"
import type { DatabaseError } from "../domain/Errors.ts"
import { draft, type EventDraft } from "../domain/Events.ts"
import * as Metrics from "../metrics/Metrics.ts"
import type { ToolCall, ToolSpec } from "./LanguageModel.ts"
import type { Tool, ToolContext } from "./Tool.ts"

export type ToolOutcome =
  | { readonly ok: true; readonly output: unknown }
  | { readonly ok: false; readonly error: string; readonly timedOut: boolean }

export interface RunHandle {
  readonly context: ToolContext
  readonly emit: (event: EventDraft) => Effect.Effect<void, DatabaseError>
}

export class Tools extends Context.Tag("agent-chat/Tools")<Tools, ReadonlyArray<Tool>>() {}

export class ToolDispatcher extends Context.Tag("agent-chat/ToolDispatcher")<ToolDispatcher, {
  readonly specs: ReadonlyArray<ToolSpec>
  readonly execute: (call: ToolCall, run: RunHandle) => Effect.Effect<ToolOutcome, DatabaseError>
}>() {}

class TimedOut {}

const errorText = (cause: Cause.Cause<unknown>): string => {
  const failure = Cause.failureOption(cause)
  if (failure._tag === "Some") {
    const error = failure.value
    if (typeof error === "object" && error !== null && "message" in error) return String(error.message)
    return String(error)
  }
  return Cause.isInterruptedOnly(cause) ? "cancelled" : "the tool crashed"
}

const make = Effect.gen(function*() {
  const tools = yield* Tools
  const config = yield* AppConfig
  const byName = new Map(tools.map((tool) => [tool.name, tool]))
  const timeoutText = `timed out after ${Duration.format(config.toolTimeout)}`

  const runTool = (call: ToolCall, context: ToolContext): Effect.Effect<unknown, string | TimedOut> => {
    const tool = byName.get(call.name)
    if (tool === undefined) return Effect.fail(`unknown tool "${call.name}"`)
    return tool.run(call.input, context).pipe(
      Effect.mapError((error) => error.message),
      Effect.timeoutFail({ duration: config.toolTimeout, onTimeout: () => new TimedOut() })
    )
  }

  const execute = (call: ToolCall, run: RunHandle) =>
    Effect.uninterruptibleMask((restore) =>
      Effect.gen(function*() {
        const base = { tool_call_id: call.id, tool: call.name }
        yield* run.emit(draft("tool_executing", run.context.runId, { ...base, input: call.input }))
        const started = yield* Clock.currentTimeMillis
        const exit = yield* Effect.exit(restore(runTool(call, run.context)))
        const duration_ms = (yield* Clock.currentTimeMillis) - started
        yield* Metric.update(Metric.tagged(Metrics.toolDuration, "tool", call.name), duration_ms / 1000)
        const timedOut = Exit.isFailure(exit) && Cause.failureOption(exit.cause).pipe(
          Option.exists((error) => error instanceof TimedOut)
        )
        const outcome: ToolOutcome = Exit.isSuccess(exit)
          ? { ok: true, output: exit.value }
          : { ok: false, error: timedOut ? timeoutText : errorText(exit.cause), timedOut }
        yield* run.emit(draft(
          "tool_completed",
          run.context.runId,
          outcome.ok ? { ...base, output: outcome.output, duration_ms } : { ...base, error: outcome.error, duration_ms }
        ))
        if (Exit.isFailure(exit) && Cause.isInterrupted(exit.cause)) return yield* Effect.interrupt
        return outcome
      })
    ).pipe(Effect.withSpan("ToolDispatcher.execute", { attributes: { tool: call.name } }))

  return ToolDispatcher.of({
    specs: tools.map(({ description, name, parameters }) => ({ name, description, parameters })),
    execute
  })
})

export const ToolDispatcherLive: Layer.Layer<ToolDispatcher, never, Tools | AppConfig> = Layer.effect(
  ToolDispatcher,
  make
)

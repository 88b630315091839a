/**
 * ToolDispatcher: the only way a run executes a tool. It emits
 * `tool_executing` before and one `tool_completed` after, with the
 * duration and the output or the error, when the tool answers, fails or
 * times out. A failing tool never fails the run; one that does not answer
 * within TOOL_TIMEOUT_MS is reported `timedOut`, and the run loop then ends
 * the run with `timeout`. A call cut short by the run's end (a cancel, a
 * shutdown, the database lost) is closed by the event log's `endRun`, with
 * the error "interrupted", in the transaction of the terminal event.
 */
import { Toolkit } from "@effect/ai"
import { Cause, Clock, Context, Duration, Effect, Exit, Layer, Metric, Option } from "effect"
import { AppConfig } from "../config/AppConfig.ts"
import type { DatabaseError } from "../domain/Errors.ts"
import type { LifecycleError } from "../eventlog/EventLog.ts"
import type { ToolCall } from "../llm/SimpleModel.ts"
import * as Metrics from "../metrics/Metrics.ts"
import { draft, type EventDraft } from "../protocol/Events.ts"
import { toAiTool, type Tool, type ToolContext } from "./Tool.ts"

export type ToolOutcome =
  | { readonly ok: true; readonly output: unknown }
  | { readonly ok: false; readonly error: string; readonly timedOut: boolean }

export interface RunHandle {
  readonly context: ToolContext
  readonly emit: (event: EventDraft) => Effect.Effect<void, DatabaseError | LifecycleError>
}

export class Tools extends Context.Tag("agent-chat/Tools")<Tools, ReadonlyArray<Tool>>() {}

export class ToolDispatcher extends Context.Tag("agent-chat/ToolDispatcher")<ToolDispatcher, {
  /**
   * The tools as @effect/ai declares them to a model. Its handler is never called: runs ask the model
   * with tool call resolution disabled and execute each call here.
   */
  readonly toolkit: Toolkit.WithHandler<any>
  readonly execute: (call: ToolCall, run: RunHandle) => Effect.Effect<ToolOutcome, DatabaseError | LifecycleError>
}>() {}

class TimedOut {}

const errorText = (cause: Cause.Cause<unknown>): string => {
  const failure = Cause.failureOption(cause)
  if (failure._tag === "Some") {
    const error = failure.value
    if (typeof error === "object" && error !== null && "message" in error) return String(error.message)
    return String(error)
  }
  return "the tool crashed"
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

  const execute = Effect.fn("ToolDispatcher.execute")(function*(call: ToolCall, run: RunHandle) {
    yield* Effect.annotateCurrentSpan("tool", call.name)
    const base = { tool_call_id: call.id, tool: call.name }
    yield* run.emit(draft("tool_executing", run.context.runId, { ...base, input: call.input }))
    const started = yield* Clock.currentTimeMillis
    const exit = yield* Effect.exit(runTool(call, run.context))
    const duration_ms = (yield* Clock.currentTimeMillis) - started
    if (Exit.isFailure(exit) && !Cause.isFailType(exit.cause)) yield* Effect.logError("a tool crashed", exit.cause)
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
    return outcome
  })

  return ToolDispatcher.of({
    toolkit: {
      tools: Toolkit.make(...tools.map(toAiTool)).tools,
      handle: () => Effect.dieMessage("tools are executed by the ToolDispatcher")
    },
    execute
  })
})

export const ToolDispatcherLive: Layer.Layer<ToolDispatcher, never, Tools | AppConfig> = Layer.effect(
  ToolDispatcher,
  make
)

/**
 * RunEnd: how a run's exit becomes its terminal event, and how that end is
 * stored even when the database is gone for a while. A lost database is
 * never a defect here: the end is retried on the reconnect schedule until
 * the database answers (the event log makes a repeated end harmless), and
 * any defect is logged with its cause before it becomes `internal`.
 */
import { Cause, Effect, Exit, Option } from "effect"
import { randomUUID } from "node:crypto"
import { type DatabaseCheck, reconnectSchedule } from "../config/AppConfig.ts"
import type { EventLog, Terminal } from "../eventlog/EventLog.ts"
import { RunErrorCode } from "../protocol/Codes.ts"
import { draft } from "../protocol/Events.ts"
import type { RunFailure, RunResult } from "./RunLoop.ts"

export const failed = (runId: string, code: RunErrorCode, message: string): Terminal => ({
  status: code === RunErrorCode.Cancelled ? "cancelled" : "failed",
  event: draft("agent_error", runId, { code, message }) as Terminal["event"],
  eventId: randomUUID()
})

/** An error object that says the database failed, whatever wrapped it. */
const isDatabaseFailure = (error: unknown): boolean =>
  typeof error === "object" && error !== null && "_tag" in error &&
  (error._tag === "DatabaseError" || error._tag === "SqlError")

export interface EndContext {
  readonly runId: string
  /** Whether the server is shutting down (an interruption is then a shutdown, not a cancel). */
  readonly shuttingDown: boolean
}

/** The terminal event of a run that exited so; logs the cause of anything unexpected. */
export const terminalOf = (context: EndContext, exit: Exit.Exit<RunResult, RunFailure>) =>
  Exit.match(exit, {
    onSuccess: (result): Effect.Effect<Terminal> =>
      Effect.succeed({
        status: "completed",
        event: draft("agent_completed", context.runId, result) as Terminal["event"],
        eventId: randomUUID()
      }),
    onFailure: (cause): Effect.Effect<Terminal> => {
      const failure = Cause.failureOption(cause)
      if (Option.isSome(failure)) {
        return Effect.succeed(failed(context.runId, failure.value.code, failure.value.message))
      }
      if (Cause.isInterruptedOnly(cause)) {
        const message = context.shuttingDown ? "the server shut down" : "the run was cancelled"
        return Effect.succeed(failed(context.runId, RunErrorCode.Cancelled, message))
      }
      const defect = Cause.squash(cause)
      const terminal = isDatabaseFailure(defect)
        ? failed(context.runId, RunErrorCode.Unavailable, "the database was lost during the run")
        : failed(context.runId, RunErrorCode.Internal, "the agent crashed")
      return Effect.as(Effect.logError("run failed unexpectedly", cause), terminal)
    }
  })

/**
 * Stores the end of a run, retrying while the database fails (forever: a run left running would keep
 * its thread busy; shutdown interrupts this, and the run's lease then lets another process end it).
 * Some(true) when this stored the end, Some(false) when the run had already ended, None on a defect.
 */
export const storeEnd = (
  eventLog: EventLog["Type"],
  check: DatabaseCheck,
  nudge: Effect.Effect<void>,
  threadId: string,
  runId: string,
  terminal: Terminal
): Effect.Effect<Option.Option<boolean>> => {
  let warned = false
  return eventLog.endRun(threadId, runId, terminal).pipe(
    Effect.tapError((error) =>
      Effect.zipRight(
        warned ?
          Effect.void :
          Effect.logWarning("could not store the end of a run; retrying until the database answers")
            .pipe(Effect.annotateLogs({ reason: error.reason }), Effect.ensuring(Effect.sync(() => warned = true))),
        nudge
      )
    ),
    Effect.retry(reconnectSchedule(check)),
    Effect.map(Option.some),
    // Only a defect gets here (the retry never gives up); an interruption (shutdown) goes on as one.
    Effect.catchAllCause((cause) =>
      Cause.isInterruptedOnly(cause)
        ? Effect.interrupt
        : Effect.as(Effect.logError("could not store the end of a run", cause), Option.none<boolean>())
    )
  )
}

/**
 * Leases: a run belongs to the process that started it for as long as
 * that process renews its lease: at a fixed rate, every quarter of
 * RUN_LEASE_MS, each attempt cut off after a sixth, so that any lease
 * window holds three attempts and only three failures in a row (a process
 * cut off from the database for most of a lease) let it lapse. Any process
 * ends a run whose lease has expired, at startup and then every half
 * lease: its owner is gone (a crash, a kill, a lost host), so nobody else
 * will. A process never ends a run it still holds, whatever its lease
 * says: it knows best how that run ends. Each run it ends frees its thread
 * for the next queued message; and, as a backstop, the sweep frees every
 * thread left idle with queued messages (the process that was to start
 * the next one stopped before it could).
 */
import { Duration, Effect, Schedule, type Scope } from "effect"
import { AppConfig } from "../config/AppConfig.ts"
import { DatabaseMonitor } from "../database/Monitor.ts"
import { DatabaseError } from "../domain/Errors.ts"
import { EventLog } from "../eventlog/EventLog.ts"
import { RunErrorCode } from "../protocol/Codes.ts"
import { failed } from "./RunEnd.ts"

export const ORPHANED = "the server running this run stopped"

/**
 * Starts the renewal and the reaper for the runs `held` names; returns the first sweep, for startup to
 * run before the supervisor takes new runs. `resume` starts a free thread's next queued message.
 */
export const makeLeases = (
  held: () => ReadonlyArray<string>,
  resume: (threadId: string) => Effect.Effect<void> = () => Effect.void
) =>
  Effect.gen(function*() {
    const eventLog = yield* EventLog
    const monitor = yield* DatabaseMonitor
    const { runLease } = yield* AppConfig

    const leaseMs = Duration.toMillis(runLease)
    const renew = Effect.suspend(() => eventLog.renewLeases(held())).pipe(
      Effect.timeoutFail({
        duration: Duration.millis(leaseMs / 6),
        onTimeout: () => new DatabaseError({ reason: "renewal timed out" })
      })
    )

    /**
     * Ends the expired runs this process does not hold; how many it ended. What this process holds is
     * asked again for each run, after the list was read (a run started while the query waited is held by
     * then), and the lease is checked again in the ending transaction itself. Then the idle threads with
     * queued messages get their next run.
     */
    const sweep: Effect.Effect<number, DatabaseError> = Effect.gen(function*() {
      let ended = 0
      for (const run of yield* eventLog.expiredRuns) {
        if (held().includes(run.runId)) continue
        const terminal = failed(run.runId, RunErrorCode.Internal, ORPHANED)
        if (yield* eventLog.endRun(run.threadId, run.runId, terminal, true)) {
          ended++
          yield* Effect.logWarning("ended a run whose process stopped (its lease expired)").pipe(
            Effect.annotateLogs({ thread_id: run.threadId, run_id: run.runId })
          )
          yield* resume(run.threadId)
        }
      }
      for (const threadId of yield* eventLog.idleQueues) yield* resume(threadId)
      return ended
    })

    const every = (
      effect: Effect.Effect<unknown, DatabaseError>,
      schedule: Schedule.Schedule<unknown>,
      interval: Duration.Duration,
      what: string
    ) =>
      effect.pipe(
        Effect.tapError((error) =>
          Effect.zipRight(
            Effect.logWarning(`could not ${what}`).pipe(Effect.annotateLogs({ reason: error.reason })),
            monitor.nudge
          )
        ),
        Effect.ignore,
        Effect.repeat(schedule),
        Effect.delay(interval)
      )

    const start: Effect.Effect<void, never, Scope.Scope> = Effect.all([
      // Fixed, not spaced: a failed attempt's duration must not push the next one past the lease.
      Effect.forkScoped(
        every(
          renew,
          Schedule.fixed(leaseMs / 4),
          Duration.millis(leaseMs / 4),
          "renew the leases of this process's runs"
        )
      ),
      Effect.forkScoped(
        every(sweep, Schedule.spaced(leaseMs / 2), Duration.millis(leaseMs / 2), "end runs of stopped processes")
      )
    ], { discard: true })

    return { sweep, start } as const
  }).pipe(Effect.annotateLogs({ component: "supervisor" }))

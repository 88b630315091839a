/**
 * Leases: a run belongs to the process that started it for as long as
 * that process renews its lease (every third of RUN_LEASE_MS). Any process
 * ends a run whose lease has expired, at startup and then every half
 * lease: its owner is gone (a crash, a kill, a lost host), so nobody else
 * will. A process never ends a run it still holds, whatever its lease
 * says: it knows best how that run ends.
 */
import { Duration, Effect, Schedule, type Scope } from "effect"
import { AppConfig } from "../config/AppConfig.ts"
import { DatabaseMonitor } from "../database/Monitor.ts"
import type { DatabaseError } from "../domain/Errors.ts"
import { EventLog, renewEvery } from "../eventlog/EventLog.ts"
import { RunErrorCode } from "../protocol/Codes.ts"
import { failed } from "./RunEnd.ts"

export const ORPHANED = "the server running this run stopped"

/**
 * Starts the renewal and the reaper for the runs `held` names; returns the first sweep, for startup to
 * run before the supervisor takes new runs.
 */
export const makeLeases = (held: () => ReadonlyArray<string>) =>
  Effect.gen(function*() {
    const eventLog = yield* EventLog
    const monitor = yield* DatabaseMonitor
    const { runLease } = yield* AppConfig

    const renew = Effect.suspend(() => eventLog.renewLeases(held()))

    /**
     * Ends the expired runs this process does not hold; how many it ended. What this process holds is
     * asked again for each run, after the list was read (a run started while the query waited is held by
     * then), and the lease is checked again in the ending transaction itself.
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
        }
      }
      return ended
    })

    const every = (effect: Effect.Effect<unknown, DatabaseError>, interval: Duration.Duration, what: string) =>
      effect.pipe(
        Effect.tapError((error) =>
          Effect.zipRight(
            Effect.logWarning(`could not ${what}`).pipe(Effect.annotateLogs({ reason: error.reason })),
            monitor.nudge
          )
        ),
        Effect.ignore,
        Effect.repeat(Schedule.spaced(interval)),
        Effect.delay(interval)
      )

    const start: Effect.Effect<void, never, Scope.Scope> = Effect.all([
      Effect.forkScoped(every(renew, renewEvery(runLease), "renew the leases of this process's runs")),
      Effect.forkScoped(every(sweep, Duration.millis(Duration.toMillis(runLease) / 2), "end runs of stopped processes"))
    ], { discard: true })

    return { sweep, start } as const
  }).pipe(Effect.annotateLogs({ component: "supervisor" }))

/**
 * DatabaseMonitor: whether the database answers, after startup. One fiber
 * checks it on an interval; once three checks in a row fail it is `lost`:
 * readiness and `/metrics` report it down with the reason and since when,
 * and the fiber tries again on the reconnect `Schedule` until it answers.
 * Anyone whose query failed can `nudge` it to check at once. (Requests
 * that need the database meanwhile fail on their own, with `unavailable`.)
 */
import * as SqlClient from "@effect/sql/SqlClient"
import { Clock, Context, Effect, Layer, Metric, Queue, Schedule } from "effect"
import { AppConfig, reconnectSchedule } from "../config/AppConfig.ts"
import { type ComponentHealth, up } from "../domain/Health.ts"
import * as Metrics from "../metrics/Metrics.ts"
import { describeCause } from "./Database.ts"

export class DatabaseMonitor extends Context.Tag("agent-chat/DatabaseMonitor")<DatabaseMonitor, {
  /** False from a failed check until a check succeeds again. */
  readonly isUp: () => boolean
  /** Asks for a check now (a query failed). */
  readonly nudge: Effect.Effect<void>
  readonly health: Effect.Effect<ComponentHealth>
}>() {}

export const DatabaseMonitorLive: Layer.Layer<DatabaseMonitor, never, AppConfig | SqlClient.SqlClient> = Layer
  .scoped(
    DatabaseMonitor,
    Effect.gen(function*() {
      const { databaseCheck } = yield* AppConfig
      const sql = yield* SqlClient.SqlClient
      const nudges = yield* Queue.sliding<void>(1)
      let lost: { readonly since: number; reason: string; attempts: number } | undefined

      const check = sql`SELECT 1`.pipe(
        Effect.timeoutFail({
          duration: databaseCheck.timeout,
          onTimeout: () => new Error(`no answer within ${databaseCheck.timeout.toString()}`)
        }),
        Effect.asVoid
      )

      // Lost only after three failed checks in a row: a busy database may miss one check's deadline, and
      // a blip fails two at once (the query in flight on the reset connection, then the refused reconnect).
      const confirmed = check.pipe(
        Effect.retry(Schedule.exponential(databaseCheck.reconnectBase, 2).pipe(Schedule.intersect(Schedule.recurs(2))))
      )
      const whileUp = Queue.take(nudges).pipe(
        Effect.timeout(databaseCheck.interval),
        Effect.ignore,
        Effect.zipRight(confirmed),
        Effect.forever
      )
      const whileLost = check.pipe(
        Effect.tapError((error) =>
          Effect.sync(() => {
            if (lost !== undefined) {
              lost.attempts++
              lost.reason = describeCause(error)
            }
          })
        ),
        Effect.retry(reconnectSchedule(databaseCheck))
      )
      const monitor = Effect.gen(function*() {
        for (;;) {
          const error = yield* Effect.flip(whileUp)
          lost = { since: yield* Clock.currentTimeMillis, reason: describeCause(error), attempts: 1 }
          yield* Metric.increment(Metrics.databaseLost)
          yield* Effect.logError("database lost; requests that need it fail with unavailable until it answers again")
            .pipe(
              Effect.annotateLogs({ component: "database", reason: lost.reason })
            )
          yield* whileLost
          const downFor = (yield* Clock.currentTimeMillis) - lost.since
          lost = undefined
          yield* Effect.logInfo("database recovered").pipe(
            Effect.annotateLogs({ component: "database", down_ms: downFor })
          )
        }
      })
      yield* Effect.forkScoped(monitor)

      return DatabaseMonitor.of({
        isUp: () => lost === undefined,
        nudge: Queue.offer(nudges, undefined).pipe(Effect.asVoid),
        health: Effect.sync(() =>
          lost === undefined
            ? up()
            : {
              status: "down",
              reason: `the database does not answer: ${lost.reason}`,
              since: new Date(lost.since).toISOString(),
              reconnect_attempts: lost.attempts
            }
        )
      })
    })
  )

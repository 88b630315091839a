/**
 * Supervisor: starts, runs and cancels agent runs. A run is a fiber owned
 * by the supervisor, not by the connection that asked for it: a disconnect
 * does not stop it, `cancel_run` from any member does. Every run ends with
 * exactly one terminal event, written in the transaction that ends the run.
 */
import { Cause, Clock, Context, Deferred, Duration, Effect, Exit, Fiber, Layer, Metric, Option, Schedule } from "effect"
import { Auth, type Principal } from "../auth/Auth.ts"
import { AppConfig, reconnectSchedule } from "../config/AppConfig.ts"
import { DatabaseMonitor } from "../database/Monitor.ts"
import { type RunStatus, Threads } from "../database/Threads.ts"
import { RunErrorCode } from "../domain/Codes.ts"
import { type DatabaseError, RequestError, StartupError } from "../domain/Errors.ts"
import { draft, type EventDraft } from "../domain/Events.ts"
import { type ComponentHealth, up } from "../domain/Health.ts"
import * as Metrics from "../metrics/Metrics.ts"
import { WebSocketHub } from "../websocket/WebSocketHub.ts"
import { makeAgentLoop, type RunFailure } from "./AgentLoop.ts"
import { LanguageModel } from "./LanguageModel.ts"
import { ToolDispatcher } from "./ToolDispatcher.ts"

export interface Accepted {
  readonly messageId: string
  readonly runId: string
}

export class Supervisor extends Context.Tag("agent-chat/Supervisor")<Supervisor, {
  /**
   * Stores the message and starts a run. `accepted` runs after the message is stored and before any of
   * its events is published, so the sender's ack precedes them.
   */
  readonly send: (
    principal: Principal,
    threadId: string,
    content: string,
    accepted: (ids: Accepted) => Effect.Effect<void>
  ) => Effect.Effect<Accepted, RequestError | DatabaseError>
  /** Cancels a running run; when this succeeds the run has ended with `agent_error` `cancelled`. */
  readonly cancel: (principal: Principal, runId: string) => Effect.Effect<void, RequestError | DatabaseError>
  readonly activeRuns: Effect.Effect<number>
  /**
   * Shutdown: refuses new messages (`busy`), lets active runs finish for up to `grace`, then cancels the
   * rest; returns once every run has ended (a run whose end cannot be stored for want of the database is
   * left to the next process, which closes it at startup).
   */
  readonly drain: (grace: Duration.Duration) => Effect.Effect<void>
  readonly health: Effect.Effect<ComponentHealth>
}>() {}

interface ActiveRun {
  readonly fiber: Fiber.RuntimeFiber<void>
  /** How the run ended, once its terminal event is stored; None when that could not be stored. */
  readonly outcome: Deferred.Deferred<Option.Option<RunStatus>>
}

type Terminal = { readonly status: Exclude<RunStatus, "running">; readonly event: EventDraft }

const failed = (runId: string, code: RunErrorCode, message: string): Terminal => ({
  status: code === RunErrorCode.Cancelled ? "cancelled" : "failed",
  event: draft("agent_error", runId, { code, message })
})

const make = Effect.gen(function*() {
  const hub = yield* WebSocketHub
  const auth = yield* Auth
  const threads = yield* Threads
  const model = yield* LanguageModel
  const loop = yield* makeAgentLoop
  const monitor = yield* DatabaseMonitor
  const { databaseCheck } = yield* AppConfig
  const scope = yield* Effect.scope
  const runs = new Map<string, ActiveRun>()
  let shuttingDown = false
  let draining = false

  /** Ends a run that is still running, with its terminal event; false when it had already ended. */
  const finish = (threadId: string, runId: string, terminal: Terminal) =>
    threads.transaction(Effect.gen(function*() {
      const code = terminal.event.event_type === "agent_error" ? terminal.event.data.code : null
      if (!(yield* threads.finishRun(runId, terminal.status, code))) return []
      return yield* threads.append(threadId, [terminal.event])
    })).pipe(
      Effect.tap(hub.publish),
      Effect.map((events) => events.length > 0)
    )

  const terminalOf = (runId: string, exit: Exit.Exit<{ response: string; duration_ms: number }, RunFailure>) =>
    Exit.match(exit, {
      onSuccess: (result): Terminal => ({ status: "completed", event: draft("agent_completed", runId, result) }),
      onFailure: (cause): Terminal => {
        const failure = Cause.failureOption(cause)
        if (Option.isSome(failure)) return failed(runId, failure.value.code, failure.value.message)
        if (Exit.isInterrupted(exit)) {
          return failed(runId, RunErrorCode.Cancelled, shuttingDown ? "the server shut down" : "the run was cancelled")
        }
        return failed(runId, RunErrorCode.Internal, "the agent crashed")
      }
    })

  // Runs left `running` by a previous process can never end by themselves.
  yield* threads.runningRuns.pipe(
    Effect.flatMap(
      Effect.forEach((run) =>
        finish(
          run.thread_id,
          run.run_id,
          failed(run.run_id, RunErrorCode.Internal, "the server restarted during the run")
        )
      )
    ),
    Effect.mapError((cause) =>
      new StartupError({ component: "supervisor", reason: "could not close the runs of a previous process", cause })
    )
  )

  /** Cancels every run still going; each ends with `agent_error` `cancelled` "the server shut down". */
  const cancelAll = Effect.suspend(() => {
    shuttingDown = true
    return Fiber.interruptAll([...runs.values()].map((run) => run.fiber))
  })
  yield* Effect.addFinalizer(() => cancelAll)

  const start = (threadId: string, runId: string, messageId: string, latch: Deferred.Deferred<void>) =>
    Effect.gen(function*() {
      const outcome = yield* Deferred.make<Option.Option<RunStatus>>()
      const startedAt = yield* Clock.currentTimeMillis
      yield* Metric.increment(Metric.tagged(Metrics.runs, "outcome", "started"))
      const record = (exit: Exit.Exit<{ response: string; duration_ms: number }, RunFailure>) => {
        const terminal = terminalOf(runId, exit)
        const measured = Effect.flatMap(Clock.currentTimeMillis, (now) =>
          Effect.all([
            Metric.increment(Metric.tagged(Metrics.runs, "outcome", terminal.status)),
            Metric.update(Metrics.runDuration, (now - startedAt) / 1000),
            Effect.logInfo("run ended").pipe(Effect.annotateLogs({
              status: terminal.status,
              duration_ms: now - startedAt,
              ...(terminal.event.event_type === "agent_error" ? { code: terminal.event.data.code } : {})
            }))
          ], { discard: true }))
        const settle = (status: Option.Option<RunStatus>) =>
          Deferred.succeed(outcome, status).pipe(Effect.ensuring(Effect.sync(() => runs.delete(runId))))
        const store = finish(threadId, runId, terminal).pipe(
          Effect.zipLeft(measured),
          Effect.map((ended) => ended ? Option.some(terminal.status) : Option.none())
        )
        // The database lost: the run stays active (its thread busy) until its end is stored, retried on
        // the reconnect schedule in a fiber of its own, which shutdown may stop (the next process then
        // ends the run at startup).
        const storeLater = store.pipe(
          Effect.tapError(() => monitor.nudge),
          Effect.retry(reconnectSchedule(databaseCheck)),
          Effect.flatMap(settle),
          Effect.onInterrupt(() => settle(Option.none())),
          // Forked from the run's exit handler, which is uninterruptible: opt in, so shutdown can stop it.
          Effect.interruptible,
          Effect.forkIn(scope)
        )
        return store.pipe(
          Effect.flatMap(settle),
          Effect.catchTag(
            "DatabaseError",
            (error) =>
              Effect.logWarning("could not store the end of a run; retrying until the database answers").pipe(
                Effect.annotateLogs({ reason: error.reason }),
                Effect.zipRight(monitor.nudge),
                Effect.zipRight(storeLater)
              )
          ),
          Effect.catchAllCause((cause) =>
            Effect.zipRight(Effect.logError("could not store the end of a run", cause), settle(Option.none()))
          )
        )
      }
      const fiber = yield* Deferred.await(latch).pipe(
        Effect.zipRight(Effect.logInfo("run started")),
        Effect.zipRight(loop.run({ threadId, runId, messageId })),
        Effect.onExit(record),
        Effect.ignore,
        Effect.annotateLogs({ component: "supervisor", thread_id: threadId, run_id: runId }),
        Effect.withSpan("Supervisor.run", { attributes: { thread_id: threadId, run_id: runId }, root: true }),
        Effect.forkIn(scope)
      )
      runs.set(runId, { fiber, outcome })
    })

  const send = (
    principal: Principal,
    threadId: string,
    content: string,
    accepted: (ids: Accepted) => Effect.Effect<void>
  ) =>
    Effect.gen(function*() {
      if (draining) return yield* Effect.fail(RequestError.busy("the server is shutting down; reconnect elsewhere"))
      yield* auth.authorizeThread(principal, threadId)
      const stored = yield* threads.transaction(Effect.gen(function*() {
        const messageId = yield* threads.insertMessage({ threadId, userId: principal.userId, content })
        const runId = yield* threads.insertRun({ threadId, messageId, agent: model.name }).pipe(
          Effect.flatMap(Option.match({
            onNone: () => Effect.fail(RequestError.busy("a run is already active in this thread")),
            onSome: Effect.succeed
          }))
        )
        const events = yield* threads.append(threadId, [
          draft("message_created", null, { message_id: messageId, user_id: principal.userId, content }),
          draft("agent_started", runId, { agent: model.name, message_id: messageId })
        ])
        return { messageId, runId, events }
      }))
      const ids = { messageId: stored.messageId, runId: stored.runId }
      const latch = yield* Deferred.make<void>()
      yield* start(threadId, stored.runId, stored.messageId, latch)
      yield* accepted(ids)
      yield* hub.publish(stored.events)
      yield* Deferred.succeed(latch, undefined)
      return ids
    }).pipe(Effect.withSpan("Supervisor.send", { attributes: { thread_id: threadId } }))

  const cancel = (principal: Principal, runId: string) =>
    Effect.gen(function*() {
      const notFound = RequestError.notFound("run")
      const run = yield* Effect.flatten(threads.findRun(runId)).pipe(Effect.mapError(() => notFound))
      yield* auth.authorizeThread(principal, run.thread_id).pipe(
        Effect.catchTag("RequestError", () => Effect.fail(notFound))
      )
      if (run.status !== "running") return yield* Effect.fail(notFound)
      const active = runs.get(runId)
      if (active !== undefined) {
        yield* Fiber.interrupt(active.fiber)
        const status = yield* Deferred.await(active.outcome)
        if (Option.isNone(status)) {
          return yield* Effect.fail(RequestError.internal("the cancellation could not be stored"))
        }
        if (status.value !== "cancelled") return yield* Effect.fail(notFound)
        return
      }
      // Running in the log but not here: its process is gone, so end it here.
      const ended = yield* finish(run.thread_id, runId, failed(runId, RunErrorCode.Cancelled, "the run was cancelled"))
      if (!ended) return yield* Effect.fail(notFound)
    }).pipe(Effect.withSpan("Supervisor.cancel", { attributes: { run_id: runId } }))

  const activeRuns = Effect.sync(() => runs.size)

  const drain = (grace: Duration.Duration) =>
    Effect.zipRight(Effect.sync(() => draining = true), activeRuns).pipe(
      Effect.repeat({ until: (n) => n === 0, schedule: Schedule.spaced(Duration.millis(25)) }),
      // Finalizers run uninterruptibly: the wait must opt in, or the timeout could never stop it.
      Effect.interruptible,
      Effect.timeout(grace),
      Effect.ignore,
      Effect.zipRight(cancelAll),
      Effect.withSpan("Supervisor.drain")
    )

  return Supervisor.of({
    send,
    cancel,
    activeRuns,
    drain,
    health: Effect.map(activeRuns, (active) => up({ active_runs: active, agent: model.name }))
  })
})

/** The supervisor needs the hub and Auth, and says so in its type. */
export const SupervisorLive: Layer.Layer<
  Supervisor,
  StartupError,
  WebSocketHub | Auth | Threads | DatabaseMonitor | LanguageModel | ToolDispatcher | AppConfig
> = Layer.scoped(Supervisor, make)

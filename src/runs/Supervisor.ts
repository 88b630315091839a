/**
 * Supervisor: starts, runs and cancels agent runs. A run is a fiber owned
 * by the supervisor, not by the connection that asked for it: a disconnect
 * does not stop it, `cancel_run` from any member does. A run stays active
 * (its thread busy, its lease renewed) until its end is stored, which the
 * event log makes exactly one terminal event, the last.
 */
import type { LanguageModel } from "@effect/ai"
import { Clock, Context, Deferred, Duration, Effect, Fiber, Layer, Metric, Option, Queue, Schedule } from "effect"
import type { Principal } from "../auth/Auth.ts"
import { AppConfig } from "../config/AppConfig.ts"
import { DatabaseMonitor } from "../database/Monitor.ts"
import { afterCommit } from "../database/Transaction.ts"
import { type DatabaseError, RequestError, StartupError } from "../domain/Errors.ts"
import { type ComponentHealth, up } from "../domain/Health.ts"
import { EventLog, type Terminal } from "../eventlog/EventLog.ts"
import type { EndStatus, RunRecord } from "../eventlog/EventStore.ts"
import { ModelInfo } from "../llm/ModelInfo.ts"
import type { ModelStatus } from "../llm/ModelStatus.ts"
import * as Metrics from "../metrics/Metrics.ts"
import type { OnBusy } from "../protocol/ClientFrames.ts"
import { RunErrorCode } from "../protocol/Codes.ts"
import { draft } from "../protocol/Events.ts"
import { Access } from "../threads/Access.ts"
import { Threads } from "../threads/Threads.ts"
import { makeLeases } from "./Leases.ts"
import { makeMultitask } from "./Multitask.ts"
import { failed, storeEnd, terminalOf } from "./RunEnd.ts"
import { makeRunLoop, type RunContext, type RunFailure, type RunResult } from "./RunLoop.ts"
import { ToolDispatcher } from "./ToolDispatcher.ts"

export interface Accepted {
  readonly messageId: string
  /** Null when the message was queued (`on_busy: "enqueue"`): its run starts later, and names it. */
  readonly runId: string | null
}

export class Supervisor extends Context.Tag("agent-chat/Supervisor")<Supervisor, {
  /**
   * Stores the message and starts a run. `accepted` runs once they are committed and before any of
   * their events is published, so the sender's ack precedes them. With a run active in the thread,
   * `onBusy` decides: `reject` (the default) fails `busy`, `interrupt` cancels that run first, and
   * `enqueue` stores the message now and queues it, to start when the runs before it have ended.
   */
  readonly send: (
    principal: Principal,
    threadId: string,
    content: string,
    accepted: (ids: Accepted) => Effect.Effect<void>,
    onBusy?: OnBusy
  ) => Effect.Effect<Accepted, RequestError | DatabaseError>
  /** Cancels a running run; when this succeeds the run has ended with `agent_error` `cancelled`. */
  readonly cancel: (principal: Principal, runId: string) => Effect.Effect<void, RequestError | DatabaseError>
  /** Runs of this process that have not stored their end yet. */
  readonly activeRuns: Effect.Effect<number>
  /**
   * Shutdown: refuses new messages (`busy`), lets active runs finish for up to `grace`, then cancels the
   * rest and waits a little for their ends to be stored (a run whose end cannot be stored for want of
   * the database is left to its lease: another process, or the next one, ends it).
   */
  readonly drain: (grace: Duration.Duration) => Effect.Effect<void>
  readonly health: Effect.Effect<ComponentHealth>
}>() {}

interface ActiveRun {
  /** The run loop; interrupting it cancels the run. */
  readonly loop: Fiber.RuntimeFiber<RunResult, RunFailure>
  /** How the run ended once its end is stored: None when this process could not store it. */
  readonly outcome: Deferred.Deferred<Option.Option<EndStatus | "ended elsewhere">>
  /** Its end, stored already, when an interrupting send cancelled it in the log: its loop's exit is this. */
  cancelled?: Terminal
}

const make = Effect.gen(function*() {
  const eventLog = yield* EventLog
  const access = yield* Access
  const threads = yield* Threads
  const model = yield* ModelInfo
  const loop = yield* makeRunLoop
  const monitor = yield* DatabaseMonitor
  const { databaseCheck } = yield* AppConfig
  const scope = yield* Effect.scope
  const runs = new Map<string, ActiveRun>()
  let shuttingDown = false
  let draining = false
  // `on_busy`: interrupting and queued sends, and the start of a thread's next queued message.
  const multitask = makeMultitask({
    eventLog,
    agent: model.agent,
    nudge: monitor.nudge,
    start: (context, latch) => start(context, latch),
    cancelInLog: (run) => cancelInLog(run),
    stopping: () => draining || shuttingDown
  })

  /** The run's life after its loop: the terminal event stored (retried while the database is lost). */
  const finish = (context: RunContext, run: ActiveRun) =>
    Effect.gen(function*() {
      const startedAt = yield* Clock.currentTimeMillis
      const exit = yield* Fiber.await(run.loop)
      const terminal = run.cancelled ?? (yield* terminalOf({ runId: context.runId, shuttingDown }, exit))
      const stored = yield* storeEnd(eventLog, databaseCheck, monitor.nudge, context.threadId, context.runId, terminal)
      const status = Option.map(stored, (mine) => mine ? terminal.status : "ended elsewhere" as const)
      const now = yield* Clock.currentTimeMillis
      if (Option.isSome(status) && status.value !== "ended elsewhere") {
        yield* Metric.increment(Metric.tagged(Metrics.runs, "outcome", status.value))
      }
      yield* Metric.update(Metrics.runDuration, (now - startedAt) / 1000)
      yield* Effect.logInfo("run ended").pipe(Effect.annotateLogs({
        status: Option.getOrElse(status, () => "not stored"),
        duration_ms: now - startedAt,
        ...(terminal.event.event_type === "agent_error" ? { code: terminal.event.data.code } : {})
      }))
      yield* Deferred.succeed(run.outcome, status)
    }).pipe(
      Effect.onInterrupt(() => Deferred.succeed(run.outcome, Option.none())),
      Effect.ensuring(Effect.sync(() => runs.delete(context.runId))),
      // The thread is free: its next queued message starts.
      Effect.zipRight(multitask.next(context.threadId))
    )

  const start = (context: RunContext, latch: Deferred.Deferred<void>) =>
    Effect.gen(function*() {
      yield* Metric.increment(Metric.tagged(Metrics.runs, "outcome", "started"))
      const annotate = Effect.annotateLogs({
        component: "supervisor",
        thread_id: context.threadId,
        run_id: context.runId
      })
      const loopFiber = yield* Deferred.await(latch).pipe(
        Effect.zipRight(Effect.logInfo("run started")),
        Effect.zipRight(loop.run(context)),
        annotate,
        Effect.withSpan("Supervisor.run", { attributes: { thread_id: context.threadId, run_id: context.runId } }),
        // Started from a commit hook, which runs uninterruptibly, and a fork inherits that: opt in, so
        // a cancel, a timeout or shutdown can stop it.
        Effect.interruptible,
        Effect.forkIn(scope)
      )
      const outcome = yield* Deferred.make<Option.Option<EndStatus | "ended elsewhere">>()
      const run: ActiveRun = { loop: loopFiber, outcome }
      runs.set(context.runId, run)
      yield* finish(context, run).pipe(annotate, Effect.interruptible, Effect.forkIn(scope))
    })

  // Runs of processes that are gone can never end by themselves; nor can a queue whose next run they
  // were to start.
  const leases = yield* makeLeases(() => [...runs.keys()], multitask.next)
  yield* leases.sweep.pipe(
    Effect.mapError((cause) =>
      new StartupError({ component: "supervisor", reason: "could not end the runs of stopped processes", cause })
    )
  )
  yield* leases.start

  // A run of this process ended elsewhere (a cancel on another node, a lease sweep) stops here at once,
  // its model request aborted: its end, published to every node like any event, names it.
  const endings = yield* eventLog.live
  yield* Queue.takeBetween(endings, 1, 4096).pipe(
    Effect.flatMap((messages) =>
      Effect.forEach(messages, (message) => {
        const run = message.ended === undefined ? undefined : runs.get(message.ended)
        return run === undefined ? Effect.void : Fiber.interruptFork(run.loop)
      }, { discard: true })
    ),
    Effect.forever,
    Effect.forkScoped
  )

  /**
   * Stores the message and starts its run, or (`enqueue`) queues it; `busy` when it may do neither.
   * `first` runs in the same transaction, once the sender may write, before the message is stored.
   */
  const post = (
    principal: Principal,
    threadId: string,
    content: string,
    accepted: (ids: Accepted) => Effect.Effect<void>,
    enqueue: boolean,
    first: Effect.Effect<void, DatabaseError> = Effect.void
  ) =>
    Effect.gen(function*() {
      const latch = yield* Deferred.make<void>()
      const { ids } = yield* eventLog.transaction(
        Effect.gen(function*() {
          yield* access.write(principal, threadId)
          yield* first
          const messageId = yield* threads.insertMessage({ threadId, userId: principal.userId, content })
          yield* eventLog.append(threadId, [
            draft("message_created", null, { message_id: messageId, user_id: principal.userId, content })
          ])
          if (enqueue) {
            const { runId, started } = yield* multitask.enqueue(threadId, messageId)
            return { ids: { messageId, runId }, started }
          }
          const runId = yield* eventLog.startRun({ threadId, messageId, agent: model.agent })
          if (Option.isNone(runId)) {
            return yield* Effect.fail(RequestError.busy("a run is already active in this thread"))
          }
          return { ids: { messageId, runId: runId.value }, started: Option.some({ messageId, runId: runId.value }) }
        }).pipe(Effect.catchTag("LifecycleError", () => Effect.fail(RequestError.notFound("thread")))),
        ({ ids, started }) =>
          Effect.zipRight(
            Option.match(started, { onNone: () => Effect.void, onSome: (run) => start({ threadId, ...run }, latch) }),
            accepted(ids)
          )
      ).pipe(
        // Whatever follows the commit: a sender whose socket closed at its ack has its request interrupted
        // here, and the run it started must not wait for the latch forever, its thread busy.
        Effect.ensuring(Deferred.succeed(latch, undefined))
      )
      return ids
    })

  const send = Effect.fn("Supervisor.send")(function*(
    principal: Principal,
    threadId: string,
    content: string,
    accepted: (ids: Accepted) => Effect.Effect<void>,
    onBusy: OnBusy = "reject"
  ) {
    if (draining) return yield* Effect.fail(RequestError.busy("the server is shutting down; reconnect elsewhere"))
    if (onBusy === "interrupt") {
      return yield* multitask.interrupt(threadId, (first) => post(principal, threadId, content, accepted, false, first))
    }
    return yield* post(principal, threadId, content, accepted, onBusy === "enqueue")
  })

  /** Ends a running run with `agent_error` `cancelled`: through its loop here, or in the log for another process's. */
  const stop = (run: RunRecord) =>
    Effect.gen(function*() {
      const notFound = RequestError.notFound("run")
      if (run.status !== "running") return yield* Effect.fail(notFound)
      const active = runs.get(run.runId)
      if (active !== undefined) {
        yield* Fiber.interrupt(active.loop)
        const status = yield* Deferred.await(active.outcome)
        if (Option.isNone(status)) {
          return yield* Effect.fail(RequestError.internal("the cancellation could not be stored"))
        }
        if (status.value !== "cancelled") return yield* Effect.fail(notFound)
        return
      }
      // Running in the log but not here: another process runs it, or ran it.
      if (!(yield* cancelInLog(run))) return yield* Effect.fail(notFound)
      // Ended here: so is the thread's next queued message started, after the cancel's answer.
      yield* Effect.forkIn(multitask.next(run.threadId), scope)
    })

  /**
   * The cancel of a run in the log, in the caller's transaction if any: its open tool calls closed, then
   * `agent_error` `cancelled`; false when it had ended. Another process's loop of it stops at its next
   * event, which the log refuses; a loop of it here is stopped once this commits, its end this one.
   */
  const cancelInLog = (run: RunRecord) =>
    Effect.gen(function*() {
      const terminal = failed(run.runId, RunErrorCode.Cancelled, "the run was cancelled")
      const ended = yield* eventLog.endRun(run.threadId, run.runId, terminal)
      if (!ended) return false
      yield* afterCommit(Effect.suspend(() => {
        const active = runs.get(run.runId)
        if (active === undefined) return Effect.void
        active.cancelled = terminal
        return Effect.asVoid(Fiber.interruptFork(active.loop))
      }))
      return true
    })

  const cancel = Effect.fn("Supervisor.cancel")(function*(principal: Principal, runId: string) {
    const notFound = RequestError.notFound("run")
    const run = yield* eventLog.findRun(runId)
    if (Option.isNone(run)) return yield* Effect.fail(notFound)
    yield* access.read(principal, run.value.threadId).pipe(Effect.catchTag("RequestError", () => Effect.fail(notFound)))
    yield* stop(run.value)
  })

  const activeRuns = Effect.sync(() => runs.size)

  const waitForRuns = (until: number) =>
    activeRuns.pipe(Effect.repeat({ until: (n) => n <= until, schedule: Schedule.spaced(Duration.millis(25)) }))

  const drain = (grace: Duration.Duration) =>
    Effect.sync(() => draining = true).pipe(
      Effect.zipRight(waitForRuns(0)),
      // Finalizers run uninterruptibly: the wait must opt in, or the timeout could never stop it.
      Effect.interruptible,
      Effect.timeout(grace),
      Effect.ignore,
      Effect.zipRight(Effect.suspend(() => {
        shuttingDown = true
        return Fiber.interruptAll([...runs.values()].map((run) => run.loop))
      })),
      // Their ends are stored in a moment, unless the database is lost: then the leases see to them.
      Effect.zipRight(waitForRuns(0).pipe(Effect.interruptible, Effect.timeout(Duration.seconds(3)), Effect.ignore)),
      Effect.withSpan("Supervisor.drain")
    )

  yield* Effect.addFinalizer(() =>
    Effect.suspend(() => {
      shuttingDown = true
      return Fiber.interruptAll([...runs.values()].map((run) => run.loop))
    })
  )

  return Supervisor.of({
    send,
    cancel,
    activeRuns,
    drain,
    health: Effect.map(activeRuns, (active) => up({ active_runs: active, agent: model.agent }))
  })
})

/**
 * What the supervisor needs, in its type: the event log, the access rule, the model (@effect/ai's
 * LanguageModel, with which model it is and how it has been answering) and the tools.
 */
export const SupervisorLive: Layer.Layer<
  Supervisor,
  StartupError,
  | EventLog
  | Access
  | Threads
  | DatabaseMonitor
  | LanguageModel.LanguageModel
  | ModelInfo
  | ModelStatus
  | ToolDispatcher
  | AppConfig
> = Layer.scoped(Supervisor, make)

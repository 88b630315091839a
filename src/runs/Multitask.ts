/**
 * Multitask: what a `send_message` does to a thread with a run in
 * progress, by its `on_busy`, beyond `reject` (`busy`):
 *
 * - `enqueue`: the message is stored and queued in the database, in its
 *   send's transaction; under the thread's lock, a free thread starts its
 *   first queued message there and then. Whatever ends a thread's run (its
 *   owner, a cancel from another process, the lease sweep) then calls
 *   `next`, which starts the next one; and the sweep calls it for every
 *   idle thread with a queue, for a process that stopped in between. Each
 *   start takes the thread's lock and the one-active-run rule decides, so
 *   two processes never start the same message, nor two runs at once.
 * - `interrupt`: the active run's cancel (as `cancel_run` stores it, whoever
 *   owns the run), the message and its run's start are one transaction,
 *   under the thread's lock: no other run, queued or not, can start between
 *   the cancel and the start, and the message goes before the queue.
 */
import { Deferred, Effect, Either, Option } from "effect"
import type { DatabaseError, RequestError } from "../domain/Errors.ts"
import type { EventLog, QueuedStart } from "../eventlog/EventLog.ts"
import type { RunRecord } from "../eventlog/EventStore.ts"
import { ErrorCode } from "../protocol/Codes.ts"
import type { RunContext } from "./RunLoop.ts"

/** How many times an interrupting send tries to take its thread over before it gives up with `busy`. */
const INTERRUPT_ATTEMPTS = 3

export interface MultitaskDeps {
  readonly eventLog: EventLog["Type"]
  /** The agent named in the `agent_started` of the runs it starts. */
  readonly agent: string
  readonly nudge: Effect.Effect<void>
  /** Runs a started run here; its loop waits for `latch`. */
  readonly start: (context: RunContext, latch: Deferred.Deferred<void>) => Effect.Effect<void>
  /** The supervisor's cancel of a run, in the caller's transaction; false when the run had ended. */
  readonly cancelInLog: (run: RunRecord) => Effect.Effect<boolean, DatabaseError>
  /** Whether this process is draining or stopping: it then starts no queued run (the others do). */
  readonly stopping: () => boolean
}

/** A send, with `first` done in its transaction after the sender's access check, before its message. */
export type Attempt<A> = (first: Effect.Effect<void, DatabaseError>) => Effect.Effect<A, RequestError | DatabaseError>

export const makeMultitask = (deps: MultitaskDeps) => {
  const { eventLog } = deps

  /**
   * Starts the run of the thread's first queued message if the thread is free. Never fails: what it
   * could not start, the next sweep starts.
   */
  const next = (threadId: string): Effect.Effect<void> =>
    Effect.suspend(() => {
      if (deps.stopping()) return Effect.void
      return Effect.gen(function*() {
        // A read outside the lock, so a thread nobody queued for costs no transaction. It cannot miss a
        // message: one queued after this read found its thread free, and its own send started it.
        if (!(yield* eventLog.hasQueued(threadId))) return
        const latch = yield* Deferred.make<void>()
        yield* eventLog.transaction(
          eventLog.startQueued({ threadId, agent: deps.agent }),
          Option.match({ onNone: () => Effect.void, onSome: (run) => deps.start({ threadId, ...run }, latch) })
        )
        yield* Deferred.succeed(latch, undefined)
      }).pipe(
        Effect.catchAll((error) =>
          Effect.zipRight(
            Effect.logWarning("could not start the next queued message").pipe(
              Effect.annotateLogs({
                thread_id: threadId,
                reason: error._tag === "DatabaseError" ? error.reason : error.message
              })
            ),
            deps.nudge
          )
        )
      )
    })

  /**
   * In a send's transaction, after its message: queues it, and starts the thread's first queued message
   * if the thread is free. The run id when the run started is this message's.
   */
  const enqueue = (threadId: string, messageId: string) =>
    Effect.gen(function*() {
      yield* eventLog.enqueue(threadId, messageId)
      const started: Option.Option<QueuedStart> = yield* eventLog.startQueued({ threadId, agent: deps.agent })
      const mine = Option.filter(started, (run) => run.messageId === messageId)
      return { runId: Option.getOrNull(Option.map(mine, (run) => run.runId)), started }
    })

  /**
   * Sends; on `busy` (which comes only after the sender's write access was checked), sends again with the
   * active run's cancel first in the same transaction. A run that ended meanwhile is not cancelled: the
   * thread is free, or taken again, and the next attempt finds out which.
   */
  const interrupt = <A>(threadId: string, attempt: Attempt<A>) =>
    Effect.gen(function*() {
      let active = Option.none<RunRecord>()
      for (let tried = 1;; tried++) {
        const cancel = Option.match(active, {
          onNone: () => Effect.void,
          onSome: (run) => Effect.asVoid(deps.cancelInLog(run))
        })
        const sent = yield* Effect.either(attempt(cancel))
        if (Either.isRight(sent)) return sent.right
        const busy = sent.left._tag === "RequestError" && sent.left.code === ErrorCode.Busy
        if (!busy || tried === INTERRUPT_ATTEMPTS) return yield* Effect.fail(sent.left)
        active = yield* eventLog.activeRun(threadId)
      }
    })

  return { next, enqueue, interrupt } as const
}

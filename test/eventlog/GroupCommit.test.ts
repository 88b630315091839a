/**
 * The group commit of appends, on the in-memory store: appends made at once
 * are stored in fewer transactions than appends, each thread's with
 * consecutive seqs in the order they were made, published once each; a
 * refused append of a batch fails alone, a batch is capped, a failed batch
 * fails all its appends, a caller interrupted while it waits drops its
 * append if the committer has not reached it, an append inside a
 * caller's transaction still joins it, and the appends queued when the log
 * closes are interrupted.
 */
import { describe, expect, it } from "@effect/vitest"
import {
  Chunk,
  Context,
  Deferred,
  Duration,
  Effect,
  Exit,
  Fiber,
  FiberStatus,
  Layer,
  Option,
  Queue,
  Scope
} from "effect"
import { AppConfigTest } from "../../src/config/AppConfig.ts"
import { inTransaction } from "../../src/database/Transaction.ts"
import { BrokerInProcess } from "../../src/eventlog/Broker.ts"
import {
  EventLog,
  EventLogLive,
  type LifecycleError,
  MAX_BATCH_APPENDS,
  MAX_BATCH_EVENTS
} from "../../src/eventlog/EventLog.ts"
import { EventStore } from "../../src/eventlog/EventStore.ts"
import { makeMemoryStore, type MemoryStore } from "../../src/eventlog/MemoryEventStore.ts"
import { RunErrorCode } from "../../src/protocol/Codes.ts"
import { draft } from "../../src/protocol/Events.ts"
import { failed } from "../../src/runs/RunEnd.ts"

const lease = Duration.seconds(30)

/** A test's world: two processes' event logs on one memory store, its transactions counted and gated. */
const world = Effect.gen(function*() {
  const memory = yield* makeMemoryStore
  const counts = { transactions: 0 }
  /** While set, the next batch's lock waits for it: what is appended meanwhile queues behind it. */
  let gate: { readonly reached: Deferred.Deferred<void>; readonly open: Deferred.Deferred<void> } | undefined
  /** Run once the current outermost transaction has ended, whatever its outcome. */
  let afterTransaction: (() => void) | undefined
  const store: EventStore["Type"] = {
    ...memory.store,
    transaction: (body, onCommit) =>
      Effect.flatMap(
        inTransaction,
        (nested) =>
          nested ? memory.store.transaction(body, onCommit) : Effect.suspend(() => {
            counts.transactions++
            return memory.store.transaction(body, onCommit)
          }).pipe(Effect.ensuring(Effect.sync(() => {
            const after = afterTransaction
            afterTransaction = undefined
            after?.()
          })))
      ),
    lockThreads: (threadIds) =>
      Effect.gen(function*() {
        const waiting = gate
        if (waiting !== undefined) {
          gate = undefined
          yield* Deferred.succeed(waiting.reached, undefined)
          yield* Deferred.await(waiting.open)
        }
        return yield* memory.store.lockThreads(threadIds)
      })
  }
  const deps = Layer.mergeAll(Layer.succeed(EventStore, store), BrokerInProcess, AppConfigTest({ runLease: lease }))
  const build = () =>
    Effect.map(Layer.build(Layer.fresh(EventLogLive).pipe(Layer.provide(deps))), Context.get(EventLog))
  const first = yield* build()
  const second = yield* build()

  /**
   * Holds the committer in a batch of one append to `threadId` while `appends` are made; once they all
   * wait, it is let go, and they are the next batch. `then` runs when the held batch's transaction is over.
   */
  const holding = <A, E>(
    log: EventLog["Type"],
    threadId: string,
    appends: ReadonlyArray<Effect.Effect<A, E>>,
    then?: () => void
  ) =>
    Effect.gen(function*() {
      const reached = yield* Deferred.make<void>()
      const open = yield* Deferred.make<void>()
      gate = { reached, open }
      const held = yield* Effect.fork(
        Effect.either(log.append(threadId, [draft("agent_thinking", null, { text: "held" })]))
      )
      yield* Deferred.await(reached)
      afterTransaction = then
      const fibers = yield* Effect.forEach(appends, (append) => Effect.fork(append))
      // A fiber suspended in an append is waiting for its answer: it has queued its events.
      while ((yield* Effect.forEach(fibers, Fiber.status)).some(FiberStatus.isRunning)) yield* Effect.yieldNow()
      yield* Deferred.succeed(open, undefined)
      yield* held.await
      return yield* Fiber.joinAll(fibers)
    })

  /** Another process's event log, closed with `scope`. */
  const buildIn = (scope: Scope.Scope) =>
    Effect.map(Layer.buildWithScope(Layer.fresh(EventLogLive).pipe(Layer.provide(deps)), scope), Context.get(EventLog))

  return { memory, counts, first, second, holding, buildIn }
})

const thread = (memory: MemoryStore, n: number) => {
  const id = `thread-${String(n).padStart(2, "0")}`
  memory.createThread(id)
  return id
}

const start = (log: EventLog["Type"], threadId: string) =>
  Effect.map(log.startRun({ threadId, messageId: `m-${threadId}-${log.owner}`, agent: "test" }), Option.getOrThrow)

const thinking = (runId: string, text: string) => draft("agent_thinking", runId, { text })

/** "stored", or why not: a refusal's reason, or the error's tag. */
const reason = <A, E extends { readonly _tag: string }>(effect: Effect.Effect<A, E>) =>
  Effect.map(Effect.either(effect), (result) =>
    result._tag === "Right"
      ? "stored"
      : result.left._tag === "LifecycleError"
      ? (result.left as unknown as LifecycleError).reason
      : result.left._tag)

describe("the group commit of appends", () => {
  it.scoped(
    "stores appends made at once in fewer transactions, seqs consecutive in each thread's order, published once",
    () =>
      Effect.gen(function*() {
        const { counts, first, memory } = yield* world
        const threads = Array.from({ length: 50 }, (_, n) => thread(memory, n))
        const runs = yield* Effect.forEach(threads, (threadId) => start(first, threadId))
        const live = yield* first.live
        yield* Queue.takeAll(live)
        counts.transactions = 0

        // Made in this order, all at once: the 20 appends of every thread interleaved with the others'.
        const appends = Array.from({ length: 20 }, (_, i) => threads.map((threadId, n) => ({ threadId, n, i }))).flat()
        const stored = yield* Effect.forEach(
          appends,
          ({ i, n, threadId }) => first.append(threadId, [thinking(runs[n]!, `${i}`)]),
          { concurrency: "unbounded" }
        )

        expect(counts.transactions).toBeLessThan(appends.length / 10)
        for (const [n, threadId] of threads.entries()) {
          const events = memory.events(threadId)
          expect(events.map((e) => e.seq)).toEqual(Array.from({ length: 21 }, (_, i) => i + 1))
          expect(events.slice(1).map((e) => (e.data as { text: string }).text))
            .toEqual(Array.from({ length: 20 }, (_, i) => `${i}`))
          expect(events.slice(1).every((e) => e.run_id === runs[n])).toBe(true)
        }
        // Each caller is answered with its own event.
        expect(
          stored.map((events) => [events.length, events[0]!.thread_id, (events[0]!.data as { text: string }).text])
        )
          .toEqual(appends.map(({ i, threadId }) => [1, threadId, `${i}`]))

        const published = Chunk.toReadonlyArray(yield* Queue.takeAll(live))
        expect(published).toHaveLength(appends.length)
        for (const threadId of threads) {
          expect(published.filter((m) => m.threadId === threadId).map((m) => m.seq))
            .toEqual(Array.from({ length: 20 }, (_, i) => i + 2))
        }
      })
  )

  it.scoped("fails a refused append of a batch alone, storing the rest of the batch with no gap", () =>
    Effect.gen(function*() {
      const { counts, first, holding, memory, second } = yield* world
      const [held, mine, theirs, ended] = [0, 1, 2, 3].map((n) => thread(memory, n)) as [string, string, string, string]
      const run = yield* start(first, mine)
      const other = yield* start(second, theirs)
      const gone = yield* start(first, ended)
      yield* first.endRun(ended, gone, failed(gone, RunErrorCode.Cancelled, "cancelled"))
      const call = { tool_call_id: "c1", tool: "clock" }
      counts.transactions = 0

      const outcomes = yield* holding(
        first,
        held,
        [
          first.append(mine, [thinking(run, "a")]),
          first.append(theirs, [thinking(other, "not mine")]),
          first.append(mine, [draft("tool_completed", run, { ...call, output: 1, duration_ms: 1 })]),
          first.append(mine, [draft("tool_executing", run, { ...call, input: {} })]),
          first.append(ended, [thinking(gone, "late")]),
          first.append("no-such-thread", [draft("members_changed", null, { added: [], removed: [], by: "u" })]),
          first.append(mine, [draft("tool_executing", run, { ...call, input: {} })]),
          first.append(mine, [thinking(run, "b"), thinking(run, "c")]),
          first.append(mine, [draft("tool_completed", run, { ...call, output: 1, duration_ms: 1 })])
        ].map(reason)
      )

      // The held batch, then one batch for all of these.
      expect(counts.transactions).toBe(2)
      expect(outcomes).toEqual([
        "stored",
        "not_owner",
        "tool_call_not_open",
        "stored",
        "run_ended",
        "unknown_thread",
        "tool_call_reused",
        "stored",
        "stored"
      ])
      const events = memory.events(mine)
      expect(events.map((e) => e.seq)).toEqual([1, 2, 3, 4, 5, 6])
      expect(events.map((e) => e.event_type)).toEqual([
        "agent_started",
        "agent_thinking",
        "tool_executing",
        "agent_thinking",
        "agent_thinking",
        "tool_completed"
      ])
      expect(memory.events(theirs).map((e) => e.event_type)).toEqual(["agent_started"])
      expect(memory.events(ended).map((e) => e.event_type)).toEqual(["agent_started", "agent_error"])
    }))

  it.scoped("keeps an append of several events with a tool call in its own transaction: its refusal opens no call", () =>
    Effect.gen(function*() {
      const { first, memory } = yield* world
      const threadId = thread(memory, 0)
      const run = yield* start(first, threadId)
      const stray = draft("tool_completed", run, { tool_call_id: "c9", tool: "clock", output: 1, duration_ms: 1 })
      expect(
        yield* reason(first.append(threadId, [
          draft("tool_executing", run, {
            tool_call_id: "c1",
            tool: "clock",
            input: {}
          }),
          stray
        ]))
      ).toBe("tool_call_not_open")
      // Had the refused append's call been opened, this would be a reused id.
      expect(
        yield* reason(first.append(threadId, [draft("tool_executing", run, {
          tool_call_id: "c1",
          tool: "clock",
          input: {}
        })]))
      ).toBe("stored")
      expect(memory.events(threadId).map((e) => e.seq)).toEqual([1, 2])
    }))

  it.scoped("fails every append of a batch whose transaction fails, storing nothing of it", () =>
    Effect.gen(function*() {
      const { counts, first, holding, memory } = yield* world
      const threads = [0, 1, 2, 3].map((n) => thread(memory, n))
      const runs = yield* Effect.forEach(threads.slice(1), (threadId) => start(first, threadId))
      counts.transactions = 0

      // The batch after the held one fails its commit.
      const outcomes = yield* holding(
        first,
        threads[0]!,
        [...runs, ...runs].map((run, k) => reason(first.append(threads[1 + (k % 3)]!, [thinking(run, `${k}`)]))),
        () => memory.faults.nextCommit = "before"
      )

      expect(counts.transactions).toBe(2)
      expect(outcomes).toEqual(Array.from({ length: 6 }, () => "DatabaseError"))
      for (const threadId of threads.slice(1)) {
        expect(memory.events(threadId).map((e) => e.event_type)).toEqual(["agent_started"])
      }
      // Nothing of it was kept, its seqs included.
      yield* first.append(threads[1]!, [thinking(runs[0]!, "after")])
      expect(memory.events(threads[1]!).map((e) => e.seq)).toEqual([1, 2])
    }))

  it.scoped(
    "caps a batch by its appends and by its events, the rest waiting for the next batch",
    () =>
      Effect.gen(function*() {
        const { counts, first, holding, memory } = yield* world
        const [held, threadId] = [0, 1].map((n) => thread(memory, n)) as [string, string]
        const run = yield* start(first, threadId)
        counts.transactions = 0

        const many = Array.from(
          { length: MAX_BATCH_APPENDS + 1 },
          (_, i) => first.append(threadId, [thinking(run, `${i}`)])
        )
        yield* holding(first, held, many)
        // The held batch, a full one, and the one append left over.
        expect(counts.transactions).toBe(3)

        const large = Math.floor(MAX_BATCH_EVENTS / 2) + 1
        const big = (text: string) => Array.from({ length: large }, () => thinking(run, text))
        yield* holding(first, held, [first.append(threadId, big("x")), first.append(threadId, big("y"))])
        expect(counts.transactions).toBe(6)

        const events = memory.events(threadId)
        expect(events.map((e) => e.seq)).toEqual(Array.from({ length: events.length }, (_, i) => i + 1))
        expect(events.length).toBe(1 + MAX_BATCH_APPENDS + 1 + 2 * large)
      }),
    { timeout: 30_000 }
  )

  it.scoped("drops the append of a caller interrupted before the committer reached it, and goes on", () =>
    Effect.gen(function*() {
      const { first, holding, memory } = yield* world
      const [held, threadId] = [0, 1].map((n) => thread(memory, n)) as [string, string]
      const run = yield* start(first, threadId)

      const interrupted = Effect.gen(function*() {
        const fiber = yield* Effect.fork(first.append(threadId, [thinking(run, "b")]))
        while (!FiberStatus.isSuspended(yield* Fiber.status(fiber))) yield* Effect.yieldNow()
        yield* Fiber.interrupt(fiber)
        return "interrupted"
      })
      const outcomes = yield* holding(first, held, [
        reason(first.append(threadId, [thinking(run, "a")])),
        interrupted,
        reason(first.append(threadId, [thinking(run, "c")]))
      ])

      expect(outcomes).toEqual(["stored", "interrupted", "stored"])
      expect(yield* reason(first.append(threadId, [thinking(run, "d")]))).toBe("stored")
      expect(memory.events(threadId).map((e) => [e.seq, (e.data as { text?: string }).text]))
        .toEqual([[1, undefined], [2, "a"], [3, "c"], [4, "d"]])
    }))

  it.scoped("interrupts the appends still queued when the event log closes, and every append made after", () =>
    Effect.gen(function*() {
      const { buildIn, holding, memory } = yield* world
      const [held, threadId] = [0, 1].map((n) => thread(memory, n)) as [string, string]
      const scope = yield* Scope.make()
      const log = yield* buildIn(scope)
      const run = yield* start(log, threadId)

      // The log starts closing while the committer is in the held batch, with two appends queued behind it:
      // the held batch ends (it is never cut off midway), and the two are interrupted, not left waiting.
      const exits = yield* holding(
        log,
        held,
        ["a", "b"].map((text) => Effect.exit(log.append(threadId, [thinking(run, text)]))),
        () => void Effect.runFork(Scope.close(scope, Exit.void))
      )

      expect(exits.map(Exit.isInterrupted)).toEqual([true, true])
      expect(memory.events(threadId).map((e) => e.event_type)).toEqual(["agent_started"])
      expect(Exit.isInterrupted(yield* Effect.exit(log.append(threadId, [thinking(run, "c")])))).toBe(true)
    }))

  it.scoped("joins the caller's transaction with an append made inside it, rolled back with it", () =>
    Effect.gen(function*() {
      const { counts, first, memory } = yield* world
      const threadId = thread(memory, 0)
      const run = yield* start(first, threadId)
      counts.transactions = 0

      // Batched, it would wait for a committer that waits for this transaction's lock.
      const rolledBack = yield* first.transaction(Effect.gen(function*() {
        yield* first.append(threadId, [thinking(run, "undone")])
        return yield* Effect.fail("rolled back" as const)
      })).pipe(Effect.flip)
      expect(rolledBack).toBe("rolled back")
      expect(memory.events(threadId).map((e) => e.event_type)).toEqual(["agent_started"])

      const stored = yield* first.transaction(first.append(threadId, [thinking(run, "kept")]))
      expect(stored.map((e) => e.seq)).toEqual([2])
      expect(counts.transactions).toBe(2)
      expect(memory.events(threadId).map((e) => e.seq)).toEqual([1, 2])
    }))
})

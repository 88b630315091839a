/**
 * The group commit on the real database: two processes (two event logs,
 * each with its own connection pool, on one fresh database at
 * TEST_DATABASE_URL; on the embedded database, one pool, when it is unset)
 * append at once to the same threads, in opposite orders, so their batches
 * lock overlapping sets of threads. No batch deadlocks (PostgreSQL would
 * abort one with an error), every append is stored, in fewer transactions
 * than appends, and each thread's seqs run from 1 without a gap, each
 * process's events in the order it made them.
 */
import type * as SqlClient from "@effect/sql/SqlClient"
import { expect, it } from "@effect/vitest"
import { type Context, Effect, Layer, Option } from "effect"
import { freshPostgres } from "../../layers/Test.ts"
import { AppConfigTest } from "../../src/config/AppConfig.ts"
import { inTransaction } from "../../src/database/Transaction.ts"
import { BrokerInProcess } from "../../src/eventlog/Broker.ts"
import { EventLog, EventLogLive } from "../../src/eventlog/EventLog.ts"
import { EventStore } from "../../src/eventlog/EventStore.ts"
import { SqlEventStoreLive } from "../../src/eventlog/SqlEventStore.ts"
import { draft, type StoredEvent } from "../../src/protocol/Events.ts"
import { Threads } from "../../src/threads/Threads.ts"
import { EmbeddedTestDatabase, testDatabaseUrl } from "../utils/TestDatabase.ts"

const THREADS = 20
const APPENDS = 15

/** Two connection pools on one fresh database: two processes' (or one shared, on the embedded database). */
const pools = Option.match(testDatabaseUrl, {
  onNone: () => Effect.map(Layer.build(EmbeddedTestDatabase()), (pool) => [pool, pool] as const),
  onSome: (adminUrl) =>
    Effect.gen(function*() {
      const { layer } = yield* freshPostgres(adminUrl, 6)
      return [yield* Layer.build(Layer.fresh(layer)), yield* Layer.build(Layer.fresh(layer))] as const
    })
})

/** The SQL store, its outermost transactions counted into `counts` (a spy: every query reaches the database). */
const counted = (counts: { transactions: number }) =>
  Layer.effect(
    EventStore,
    Effect.map(EventStore, (store) => ({
      ...store,
      transaction: <A, E, R>(body: Effect.Effect<A, E, R>, onCommit?: (a: A) => Effect.Effect<void>) =>
        Effect.flatMap(inTransaction, (nested) =>
          Effect.suspend(() => {
            if (!nested) counts.transactions++
            return store.transaction(body, onCommit)
          }))
    }))
  ).pipe(Layer.provide(SqlEventStoreLive))

/** One process on a pool: its own event log (its own committer and owner id). */
const process = (pool: Context.Context<SqlClient.SqlClient>, counts = { transactions: 0 }) =>
  Layer.build(
    Layer.mergeAll(EventLogLive.pipe(Layer.provide(counted(counts))), Threads.Default).pipe(
      Layer.provide(Layer.mergeAll(Layer.succeedContext(pool), BrokerInProcess, AppConfigTest()))
    )
  )

const text = (event: StoredEvent) => {
  const data = event.data as { readonly content?: string; readonly text?: string }
  return data.content ?? data.text ?? ""
}

it.scopedLive(
  "two processes appending at once to the same threads neither deadlock nor leave a gap",
  () =>
    Effect.gen(function*() {
      const [poolA, poolB] = yield* pools
      const counts = { transactions: 0 }
      const a = yield* process(poolA, counts)
      const b = yield* process(poolB, counts)
      const threads = yield* Effect.provide(Threads, a)
      const logA = yield* Effect.provide(EventLog, a)
      const logB = yield* Effect.provide(EventLog, b)
      const ids = yield* Effect.forEach(
        Array.from({ length: THREADS }, () => undefined),
        () => threads.create({ createdBy: "ann", title: null, members: [] })
      )
      // Each process runs the agent of half the threads: its deltas join the batches too.
      const runs = new Map<string, { readonly log: EventLog["Type"]; readonly runId: string }>()
      for (const [n, threadId] of ids.entries()) {
        const log = n % 2 === 0 ? logA : logB
        const messageId = yield* threads.insertMessage({ threadId, userId: "ann", content: "think" })
        const runId = yield* log.startRun({ threadId, messageId, agent: "test" })
        runs.set(threadId, { log, runId: Option.getOrThrow(runId) })
      }

      /** A process's appends to one thread, one after another: its messages, and its run's thoughts. */
      const writer = (name: string, log: EventLog["Type"], threadId: string) =>
        Effect.forEach(Array.from({ length: APPENDS }, (_, i) => i), (i) => {
          const run = runs.get(threadId)!
          return log.append(threadId, [
            run.log === log
              ? draft("agent_thinking", run.runId, { text: `${name}-${i}` })
              : draft("message_created", null, {
                message_id: `${name}-${threadId}-${i}`,
                user_id: "ann",
                content: `${name}-${i}`
              })
          ])
        }, { discard: true })

      counts.transactions = 0
      // Every writer of both processes at once, the two processes going through the threads in opposite orders.
      yield* Effect.all([
        Effect.forEach(ids, (threadId) => writer("a", logA, threadId), { concurrency: "unbounded", discard: true }),
        Effect.forEach([...ids].reverse(), (threadId) => writer("b", logB, threadId), {
          concurrency: "unbounded",
          discard: true
        })
      ], { concurrency: "unbounded" })

      // Each writer waits for its append before the next, so a batch holds at most one append per writer.
      expect(counts.transactions).toBeLessThan((2 * THREADS * APPENDS) / 4)
      for (const threadId of ids) {
        const events = yield* logA.read(threadId, 0, 1_000)
        expect(events.map((e) => e.seq)).toEqual(Array.from({ length: 1 + 2 * APPENDS }, (_, i) => i + 1))
        expect(yield* logB.head(threadId)).toEqual(Option.some(1 + 2 * APPENDS))
        for (const name of ["a", "b"]) {
          expect(events.map(text).filter((t) => t.startsWith(`${name}-`)))
            .toEqual(Array.from({ length: APPENDS }, (_, i) => `${name}-${i}`))
        }
      }
    }),
  { timeout: 60_000 }
)

it.scopedLive(
  "appends made at once, some refused, store tool calls and the rest in order, with no gap",
  () =>
    Effect.gen(function*() {
      const [poolA, poolB] = yield* pools
      const a = yield* process(poolA)
      const b = yield* process(poolB)
      const threads = yield* Effect.provide(Threads, a)
      const logA = yield* Effect.provide(EventLog, a)
      const logB = yield* Effect.provide(EventLog, b)
      const started = (log: EventLog["Type"]) =>
        Effect.gen(function*() {
          const threadId = yield* threads.create({ createdBy: "ann", title: null, members: [] })
          const messageId = yield* threads.insertMessage({ threadId, userId: "ann", content: "go" })
          const runId = yield* log.startRun({ threadId, messageId, agent: "test" })
          return { threadId, runId: Option.getOrThrow(runId) }
        })
      const mine = yield* started(logA)
      const theirs = yield* started(logB)
      const call = { tool_call_id: "c1", tool: "clock" }

      // Made in this order, at once: whatever batches they fall into, each is checked after those before it.
      const outcomes = yield* Effect.forEach([
        logA.append(mine.threadId, [draft("tool_executing", mine.runId, { ...call, input: {} })]),
        logA.append(theirs.threadId, [draft("agent_thinking", theirs.runId, { text: "not mine" })]),
        logA.append(mine.threadId, [draft("tool_executing", mine.runId, { ...call, input: {} })]),
        logA.append(mine.threadId, [draft("tool_completed", mine.runId, { ...call, output: 1, duration_ms: 1 })]),
        logA.append("no-such-thread", [draft("members_changed", null, { added: [], removed: [], by: "ann" })]),
        logA.append(mine.threadId, [draft("agent_thinking", mine.runId, { text: "done" })])
      ], (append) =>
        Effect.match(append, {
          onSuccess: (events) => events.map((e) => e.seq).join(","),
          onFailure: (error) => error._tag === "LifecycleError" ? error.reason : error._tag
        }), { concurrency: "unbounded" })

      expect(outcomes).toEqual(["2", "not_owner", "tool_call_reused", "3", "unknown_thread", "4"])
      expect((yield* logB.read(mine.threadId, 0, 100)).map((e) => [e.seq, e.event_type])).toEqual([
        [1, "agent_started"],
        [2, "tool_executing"],
        [3, "tool_completed"],
        [4, "agent_thinking"]
      ])
      expect((yield* logB.read(theirs.threadId, 0, 100)).map((e) => e.event_type)).toEqual(["agent_started"])
    }),
  { timeout: 60_000 }
)

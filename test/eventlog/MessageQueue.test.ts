/**
 * The message queue of `on_busy: "enqueue"` in the event log, on both
 * stores (memory, and the SQL store on every test database): messages
 * queue per thread in order, a queued message starts only on a free
 * thread, one at a time, and two processes that start a thread's next
 * run at once start it once.
 */
import type * as SqlClient from "@effect/sql/SqlClient"
import { expect, layer } from "@effect/vitest"
import { Context, Duration, Effect, Layer, Option } from "effect"
import { randomUUID } from "node:crypto"
import { AppConfigTest } from "../../src/config/AppConfig.ts"
import { BrokerInProcess } from "../../src/eventlog/Broker.ts"
import { EventLog, EventLogLive } from "../../src/eventlog/EventLog.ts"
import { EventStore } from "../../src/eventlog/EventStore.ts"
import { makeMemoryStore } from "../../src/eventlog/MemoryEventStore.ts"
import { SqlEventStoreLive } from "../../src/eventlog/SqlEventStore.ts"
import { RunErrorCode } from "../../src/protocol/Codes.ts"
import { failed } from "../../src/runs/RunEnd.ts"
import { Threads } from "../../src/threads/Threads.ts"
import { allTestDatabases } from "../utils/TestDatabase.ts"

/** Two processes' event logs on one store, and how a test makes threads and messages there. */
class Fixture extends Context.Tag("test/MessageQueueFixture")<Fixture, {
  readonly first: EventLog["Type"]
  readonly second: EventLog["Type"]
  readonly thread: Effect.Effect<string>
  readonly message: (threadId: string) => Effect.Effect<string>
}>() {}

const config = AppConfigTest({ runLease: Duration.seconds(30) })

/** Built in the caller's scope, so that their brokers live as long as the suite. */
const twoLogs = (store: EventStore["Type"]) =>
  Effect.gen(function*() {
    const deps = Layer.mergeAll(Layer.succeed(EventStore, store), BrokerInProcess, config)
    const build = () =>
      Effect.map(Layer.build(Layer.fresh(EventLogLive).pipe(Layer.provide(deps))), Context.get(EventLog))
    return { first: yield* build(), second: yield* build() }
  })

const memoryFixture = Layer.scoped(
  Fixture,
  Effect.gen(function*() {
    const memory = yield* makeMemoryStore
    const logs = yield* twoLogs(memory.store)
    return {
      ...logs,
      thread: Effect.sync(() => {
        const id = randomUUID()
        memory.createThread(id)
        return id
      }),
      message: () => Effect.sync(() => randomUUID())
    }
  })
)

const sqlFixture = (database: Layer.Layer<SqlClient.SqlClient, unknown>) =>
  Layer.scoped(
    Fixture,
    Effect.gen(function*() {
      const threads = yield* Threads
      const store = yield* Effect.provide(EventStore, SqlEventStoreLive)
      const logs = yield* twoLogs(store)
      return {
        ...logs,
        thread: Effect.orDie(threads.create({ createdBy: "ann", title: null, members: [] })),
        message: (threadId: string) => Effect.orDie(threads.insertMessage({ threadId, userId: "ann", content: "q" }))
      }
    })
  ).pipe(Layer.provide(Threads.Default), Layer.provide(database))

const cases = [
  { name: "the memory store", fixture: memoryFixture },
  ...allTestDatabases().map((database) => ({
    name: `the SQL store on ${database.name}`,
    fixture: sqlFixture(database.layer)
  }))
]

const queued = (log: EventLog["Type"], threadId: string, messageId: string) =>
  log.transaction(log.enqueue(threadId, messageId))

const startNext = (log: EventLog["Type"], threadId: string) => log.startQueued({ threadId, agent: "test" })

for (const { fixture, name } of cases) {
  layer(fixture, { excludeTestServices: true, timeout: 60_000 })(`the message queue on ${name}`, (it) => {
    it.effect("starts a thread's queued messages in order, one at a time, each only on a free thread", () =>
      Effect.gen(function*() {
        const { first, message, second, thread } = yield* Fixture
        const [a, b] = [yield* thread, yield* thread]
        const [m1, m2, m3] = [yield* message(a), yield* message(a), yield* message(b)]
        yield* queued(first, a, m1)
        yield* queued(second, a, m2)
        yield* queued(first, b, m3)
        expect([...yield* first.idleQueues].filter((t) => t === a || t === b).sort()).toEqual([a, b].sort())

        const one = Option.getOrThrow(yield* startNext(second, a))
        expect(one.messageId).toBe(m1)
        expect(Option.map(yield* first.activeRun(a), (run) => [run.runId, run.messageId])).toEqual(
          Option.some([one.runId, m1])
        )
        // Its start is the thread's one event: no seq was taken for nothing.
        expect((yield* first.read(a, 0, 10)).map((e) => [e.seq, e.event_type, e.data])).toEqual([
          [1, "agent_started", { agent: "test", message_id: m1 }]
        ])
        // Busy: neither the next queued message nor a plain start may take the thread, and neither takes a seq.
        expect(yield* startNext(first, a)).toEqual(Option.none())
        expect(yield* first.startRun({ threadId: a, messageId: yield* message(a), agent: "test" })).toEqual(
          Option.none()
        )
        expect(yield* first.head(a)).toEqual(Option.some(1))
        expect(yield* first.hasQueued(a)).toBe(true)
        expect((yield* first.idleQueues).includes(a)).toBe(false)

        expect(yield* second.endRun(a, one.runId, failed(one.runId, RunErrorCode.Cancelled, "cancelled"))).toBe(true)
        expect((yield* first.idleQueues).includes(a)).toBe(true)
        const two = Option.getOrThrow(yield* startNext(first, a))
        expect(two.messageId).toBe(m2)
        expect(yield* first.hasQueued(a)).toBe(false)
        expect((yield* first.idleQueues).includes(a)).toBe(false)
        // The other thread's queue is its own.
        expect(Option.map(yield* startNext(first, b), (run) => run.messageId)).toEqual(Option.some(m3))
        expect(yield* first.hasQueued(b)).toBe(false)
      }))

    it.effect("two processes starting a thread's next run at once start it once", () =>
      Effect.gen(function*() {
        const { first, message, second, thread } = yield* Fixture
        const a = yield* thread
        const [m1, m2] = [yield* message(a), yield* message(a)]
        yield* queued(first, a, m1)
        yield* queued(first, a, m2)
        const both = yield* Effect.all([startNext(first, a), startNext(second, a)], { concurrency: "unbounded" })
        const started = both.filter(Option.isSome).map((s) => s.value)
        expect(started.map((s) => s.messageId)).toEqual([m1])
        expect((yield* first.read(a, 0, 10)).filter((e) => e.event_type === "agent_started")).toHaveLength(1)
        expect(yield* first.hasQueued(a)).toBe(true)
      }))

    it.effect("an unknown thread's queue is refused, and an empty queue starts nothing", () =>
      Effect.gen(function*() {
        const { first, thread } = yield* Fixture
        const refused = yield* Effect.flip(first.startQueued({ threadId: "no-such-thread", agent: "test" }))
        expect(refused).toMatchObject({ _tag: "LifecycleError", reason: "unknown_thread" })
        const a = yield* thread
        expect(yield* startNext(first, a)).toEqual(Option.none())
        expect(yield* first.activeRun(a)).toEqual(Option.none())
      }))
  })
}

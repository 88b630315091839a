/**
 * The event log's rules, on the in-memory store under the TestClock: what
 * it refuses, how it ends a run, and how leases decide who may end a run
 * of another process. (The same log over PostgreSQL is exercised end to
 * end by the e2e suites.)
 */
import { describe, expect, it } from "@effect/vitest"
import { Context, Duration, Effect, Layer, Option, TestClock } from "effect"
import { AppConfigTest } from "../../src/config/AppConfig.ts"
import { DatabaseMonitor } from "../../src/database/Monitor.ts"
import { up } from "../../src/domain/Health.ts"
import { BrokerInProcess } from "../../src/eventlog/Broker.ts"
import { EventLog, EventLogLive } from "../../src/eventlog/EventLog.ts"
import { EventStore } from "../../src/eventlog/EventStore.ts"
import { makeMemoryStore, type MemoryStore } from "../../src/eventlog/MemoryEventStore.ts"
import { RunErrorCode } from "../../src/protocol/Codes.ts"
import { draft } from "../../src/protocol/Events.ts"
import { makeLeases } from "../../src/runs/Leases.ts"
import { failed } from "../../src/runs/RunEnd.ts"
import { runViolations } from "../utils/RunInvariants.ts"

const T = "thread-1"
const lease = Duration.seconds(1)

/** Two processes' event logs on one store, each with its own owner id. */
const twoLogs = (memory: MemoryStore, store: EventStore["Type"] = memory.store) =>
  Effect.gen(function*() {
    const deps = Layer.mergeAll(Layer.succeed(EventStore, store), BrokerInProcess, AppConfigTest({ runLease: lease }))
    const build = () =>
      Effect.map(Layer.build(Layer.fresh(EventLogLive).pipe(Layer.provide(deps))), Context.get(EventLog))
    const first = yield* build()
    const second = yield* build()
    memory.createThread(T)
    return { first, second }
  })

const started = (log: EventLog["Type"]) =>
  Effect.map(log.startRun({ threadId: T, messageId: "m1", agent: "test" }), Option.getOrThrow)

const refusal = <A, E extends { readonly _tag: string }>(effect: Effect.Effect<A, E>) =>
  Effect.map(Effect.flip(effect), (error) => (error as { reason?: string }).reason ?? error._tag)

describe("the event log", () => {
  it.scoped("refuses what breaks the run lifecycle, storing nothing of the refused append", () =>
    Effect.gen(function*() {
      const memory = yield* makeMemoryStore
      const { first, second } = yield* twoLogs(memory)
      const runId = yield* started(first)
      const call = { tool_call_id: "c1", tool: "clock" }
      yield* first.append(T, [draft("tool_executing", runId, { ...call, input: {} })])
      // A second tool_executing of the same id, a completion of a call never opened, another's run.
      expect(yield* refusal(first.append(T, [draft("tool_executing", runId, { ...call, input: {} })])))
        .toBe("tool_call_reused")
      const stray = draft("tool_completed", runId, { tool_call_id: "c9", tool: "clock", output: 1, duration_ms: 1 })
      expect(yield* refusal(first.append(T, [draft("agent_thinking", runId, { text: "kept?" }), stray])))
        .toBe("tool_call_not_open")
      expect(yield* refusal(second.append(T, [draft("agent_thinking", runId, { text: "not mine" })])))
        .toBe("not_owner")
      expect(yield* refusal(first.append(T, [draft("agent_completed", runId, { response: "", duration_ms: 0 })])))
        .toBe("reserved_event")
      expect(memory.events(T).map((e) => e.event_type)).toEqual(["agent_started", "tool_executing"])

      // The end closes the open call first, then the terminal; nothing may follow it.
      expect(yield* first.endRun(T, runId, failed(runId, RunErrorCode.Cancelled, "cancelled"))).toBe(true)
      expect(memory.events(T).slice(-2).map((e) => [e.event_type, (e.data as { error?: string }).error]))
        .toEqual([["tool_completed", "interrupted"], ["agent_error", undefined]])
      expect(yield* first.endRun(T, runId, failed(runId, RunErrorCode.Internal, "again"))).toBe(false)
      expect(yield* refusal(first.append(T, [draft("agent_thinking", runId, { text: "late" })]))).toBe("run_ended")
      expect(runViolations(memory.events(T).map((e) => ({ ...e, data: e.data as Record<string, unknown> })), {
        ended: true,
        partial: true
      })).toEqual([])
    }))

  it.scoped("lets another process end a run only once its lease has expired, checked in the ending itself", () =>
    Effect.gen(function*() {
      const memory = yield* makeMemoryStore
      const { first, second } = yield* twoLogs(memory)
      const runId = yield* started(first)
      const orphaned = failed(runId, RunErrorCode.Internal, "the server running this run stopped")
      expect(yield* second.expiredRuns).toEqual([])
      expect(yield* second.endRun(T, runId, orphaned, true)).toBe(false)

      yield* TestClock.adjust(Duration.seconds(2))
      expect((yield* second.expiredRuns).map((r) => r.runId)).toEqual([runId])
      // The owner renews between the listing and the ending: the run is saved.
      yield* first.renewLeases([runId])
      expect(yield* second.endRun(T, runId, orphaned, true)).toBe(false)
      yield* first.append(T, [draft("agent_thinking", runId, { text: "still mine" })])

      yield* TestClock.adjust(Duration.seconds(2))
      expect(yield* second.endRun(T, runId, orphaned, true)).toBe(true)
      expect(yield* refusal(first.append(T, [draft("agent_thinking", runId, { text: "too late" })])))
        .toBe("run_ended")
    }))

  it.scoped("a sweep never ends a run its own process holds, though it started holding it as the list was read", () =>
    Effect.gen(function*() {
      const memory = yield* makeMemoryStore
      let listed = false
      const store = {
        ...memory.store,
        expiredRuns: Effect.tap(memory.store.expiredRuns, () => Effect.sync(() => listed = true))
      }
      const { first } = yield* twoLogs(memory, store)
      const runId = yield* started(first)
      yield* TestClock.adjust(Duration.seconds(2))
      const monitor = DatabaseMonitor.of({ isUp: () => true, nudge: Effect.void, health: Effect.succeed(up()) })
      // Held from the moment the list has been read, as a run whose start committed meanwhile is.
      const leases = yield* makeLeases(() => listed ? [runId] : []).pipe(
        Effect.provideService(EventLog, first),
        Effect.provideService(DatabaseMonitor, monitor),
        Effect.provide(AppConfigTest({ runLease: lease }))
      )
      expect(yield* leases.sweep).toBe(0)
      yield* first.append(T, [draft("agent_thinking", runId, { text: "still running" })])
    }))
})

/**
 * Two server processes on one database, as a rolling deploy has them: each
 * with its own supervisor, owner id, hub and broker, sharing the database.
 * A process ends only runs whose owner is gone; a run ended by another
 * process (a cancel there) takes no event after its terminal.
 */
import { describe, expect, it } from "@effect/vitest"
import { Context, Effect, Layer } from "effect"
import { Supervisor } from "../../src/runs/Supervisor.ts"
import type { EventFrame } from "../utils/ChatClient.ts"
import { expectRunShape, expectValidRuns } from "../utils/invariants.ts"
import { Gate, gatedModel } from "../utils/Models.ts"
import { TestDatabaseLive } from "../utils/TestDatabase.ts"
import { service, TestServer, type TestServerShape } from "../utils/TestServer.ts"
import { until } from "../utils/until.ts"

const twoProcesses = (gate: Gate) =>
  Effect.gen(function*() {
    const database = yield* Layer.memoize(TestDatabaseLive())
    const first = Context.get(
      yield* Layer.build(TestServer.layer({ model: gatedModel(gate, 3), database })),
      TestServer
    )
    const start = () =>
      Effect.map(Layer.build(TestServer.layer({ model: gatedModel(gate, 3), database })), Context.get(TestServer))
    return { first, start }
  })

const stored = async (server: TestServerShape, threadId: string): Promise<Array<EventFrame>> =>
  (await (await server.fetch(`/api/threads/${threadId}/events`, { userId: "alice" })).json()).events

describe("two processes on one database", () => {
  it.scopedLive("a process that starts leaves alone the runs another live process holds", () =>
    Effect.gen(function*() {
      const gate = new Gate()
      const { first, start } = yield* twoProcesses(gate)
      const alice = yield* Effect.promise(() => first.connect("alice"))
      const { thread_id } = yield* Effect.promise(() => alice.request({ type: "create_thread" }))
      const sent = yield* Effect.promise(() => alice.request({ type: "send_message", thread_id, content: "go" }))
      yield* Effect.promise(() => alice.waitFor((f) => f.type === "event" && f.event_type === "agent_thinking"))

      // The second process starts (its startup ends the runs of stopped processes), then the run goes on.
      const second = yield* start()
      gate.openFully()
      const terminal = yield* Effect.promise(() => alice.waitRunEnd(sent.run_id))
      expect(terminal.event_type).toBe("agent_completed")
      const events = yield* Effect.promise(() => stored(second, thread_id))
      expectValidRuns(events)
      const run = expectRunShape(events, sent.run_id)
      expect(run.map((e) => e.event_type)).toEqual([
        "agent_started",
        "agent_thinking",
        "agent_response_delta",
        "agent_response_delta",
        "agent_response_delta",
        "agent_completed"
      ])
    }))

  it.scopedLive("a cancel on another process ends the run there; its owner stores nothing after it", () =>
    Effect.gen(function*() {
      const gate = new Gate()
      const { first, start } = yield* twoProcesses(gate)
      const second = yield* start()
      const alice = yield* Effect.promise(() => first.connect("alice"))
      const elsewhere = yield* Effect.promise(() => second.connect("alice"))
      const { thread_id } = yield* Effect.promise(() => alice.request({ type: "create_thread" }))
      const sent = yield* Effect.promise(() => alice.request({ type: "send_message", thread_id, content: "go" }))
      yield* Effect.promise(() => alice.waitFor((f) => f.type === "event" && f.event_type === "agent_thinking"))

      yield* Effect.promise(() => elsewhere.request({ type: "cancel_run", run_id: sent.run_id }))
      // The owner's run goes on until its next event, which the log refuses: its loop stops there.
      gate.openFully()
      yield* Effect.promise(() =>
        until(
          () => Effect.runPromise(service(first, Supervisor).activeRuns).then((n) => n === 0),
          "the owner to let the run go"
        )
      )
      const events = yield* Effect.promise(() => stored(first, thread_id))
      expectValidRuns(events)
      const run = expectRunShape(events, sent.run_id)
      expect(run.at(-1)).toMatchObject({ event_type: "agent_error", data: { code: "cancelled" } })
      expect(run.filter((e) => e.event_type === "agent_response_delta")).toHaveLength(0)
      // And the thread is free on either process.
      const next = yield* Effect.promise(() => elsewhere.request({ type: "send_message", thread_id, content: "again" }))
      gate.openFully()
      expect((yield* Effect.promise(() => elsewhere.waitRunEnd(next.run_id))).event_type).toBe("agent_completed")
    }))
})

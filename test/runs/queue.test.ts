/**
 * Queued messages (`on_busy: "enqueue"`) outlive the process that took
 * them: two server processes on one in-memory store (the world of the
 * lifecycle property, in its simulation), one of them cut off from the
 * database. The other ends the cut-off process's run once its lease has
 * expired, and starts the queued message itself; and a queue left on an
 * idle thread is started by the next sweep.
 */
import { expect, it } from "@effect/vitest"
import { Cause, Effect, Exit } from "effect"
import type { Script } from "../utils/LifecycleScenario.ts"
import { inWorld, ORPHANED, principal, type World } from "../utils/LifecycleWorld.ts"
import { runViolations } from "../utils/RunInvariants.ts"
import { simulate } from "../utils/Simulation.ts"

const scripts = new Map<string, Script>([
  // Two slow tool calls: the run still goes on when its process is cut off.
  ["slow", [[{ call: "slow", id: "c1", ms: 90 }], [{ call: "slow", id: "c2", ms: 90 }], [{ say: "slow done" }]]],
  ["queued", [[{ say: "queued done" }]]]
])

const run = <A>(body: (world: World) => Effect.Effect<A, unknown>) => {
  const exit = simulate(inWorld(scripts, 0, body), 1, { horizon: 60_000, steps: 2_000_000 })
  if (Exit.isFailure(exit)) throw new Error(Cause.pretty(exit.cause))
  return exit.value
}

const violations = (world: World, thread: string) =>
  runViolations(world.memory.events(thread).map((e) => ({ ...e, data: e.data as Record<string, unknown> })), {
    ended: true
  })

it("the run of a message queued on a process cut off is started by the other process, once the first run is swept", () => {
  const seen = run((world) =>
    Effect.gen(function*() {
      const [first] = world.processes
      const held = yield* first.send(principal, "t0", "slow", () => Effect.void)
      // Its run reads the thread's messages first (this world's messages know nothing of queues).
      yield* Effect.sleep(5)
      const queued = yield* first.send(principal, "t0", "queued", () => Effect.void, "enqueue")
      const queuedAtOnce = world.memory.queued("t0")
      const createdAtOnce = world.memory.events("t0").some((e) =>
        e.event_type === "message_created" && (e.data as { message_id: string }).message_id === queued.messageId
      )
      yield* Effect.sleep(20)
      world.cut.process = 1
      yield* Effect.sleep(1_000)
      const whileCut = world.memory.runs().filter((r) => r.threadId === "t0")
      world.cut.process = 0
      yield* Effect.sleep(1_000)
      return { held, queued, queuedAtOnce, createdAtOnce, whileCut, events: world.memory.events("t0"), world }
    })
  )
  expect(seen.queued.runId).toBeNull()
  expect(seen.queuedAtOnce).toEqual([seen.queued.messageId])
  expect(seen.createdAtOnce).toBe(true)
  const [first, second] = seen.whileCut
  expect(first).toMatchObject({ runId: seen.held.runId, status: "failed" })
  expect(second).toMatchObject({ messageId: seen.queued.messageId, status: "completed" })
  expect(second!.owner).not.toBe(first!.owner)
  const ends = seen.events.filter((e) => e.event_type === "agent_error" || e.event_type === "agent_completed")
  expect(ends.map((e) => [e.run_id, e.data])).toEqual([
    [seen.held.runId, { code: "internal", message: ORPHANED }],
    [second!.runId, expect.objectContaining({ response: "queued done" })]
  ])
  expect(seen.world.memory.queued("t0")).toEqual([])
  expect(violations(seen.world, "t0")).toEqual([])
})

it("a queue left on an idle thread, its process gone before it started the next run, is started by a sweep", () => {
  const seen = run((world) =>
    Effect.gen(function*() {
      const { store } = world.memory
      // As a process that stored a queued message, then stopped before starting it, would leave it.
      yield* store.transaction(store.enqueue("t1", "left-behind", new Date(0)))
      const before = world.memory.runs().length
      yield* Effect.sleep(200)
      return { before, runs: world.memory.runs(), queue: world.memory.queued("t1") }
    })
  )
  expect(seen.before).toBe(0)
  expect(seen.runs).toEqual([
    expect.objectContaining({ threadId: "t1", messageId: "left-behind", status: "completed" })
  ])
  expect(seen.queue).toEqual([])
})

/**
 * Several nodes on one database and one Redis (BROKER=redis), as a fleet
 * behind a load balancer has them: a user's connections on two nodes, a run
 * started on one and watched and cancelled from the others. Each node is a
 * whole server graph with its own hub, supervisor and Redis connections.
 */
import { describe, expect, it } from "@effect/vitest"
import { Context, Duration, Effect, Layer, Redacted } from "effect"
import type { EventFrame } from "../../src/client/ChatClient.ts"
import { BrokerRedis } from "../../src/eventlog/RedisBroker.ts"
import { Supervisor } from "../../src/runs/Supervisor.ts"
import { expectRunShape, expectValidRuns } from "../utils/invariants.ts"
import { Gate, gatedModel } from "../utils/Models.ts"
import { TcpProxy } from "../utils/TcpProxy.ts"
import { TestDatabaseLive } from "../utils/TestDatabase.ts"
import { service, TestServer, type TestServerShape } from "../utils/TestServer.ts"
import { until } from "../utils/until.ts"

/** `.ci/run` sets it and starts Redis; a developer's machine has it on the default port. */
const redisUrl = process.env.TEST_REDIS_URL !== undefined && process.env.TEST_REDIS_URL !== ""
  ? process.env.TEST_REDIS_URL
  : "redis://127.0.0.1:6379"
const retry = { attempts: 3, baseDelay: Duration.millis(50), maxElapsed: Duration.seconds(2) }

const nodes = (gate: Gate, count: number) =>
  Effect.gen(function*() {
    const database = yield* Layer.memoize(TestDatabaseLive())
    const servers: Array<TestServerShape> = []
    for (let i = 0; i < count; i++) {
      const broker = BrokerRedis({ url: Redacted.make(redisUrl), retry })
      servers.push(
        Context.get(yield* Layer.build(TestServer.layer({ model: gatedModel(gate, 4), database, broker })), TestServer)
      )
    }
    return servers
  })

const ofRun = (events: ReadonlyArray<EventFrame>, runId: string) => events.filter((e) => e.run_id === runId)

describe("several nodes on Redis", () => {
  it.scopedLive("a user connected to two nodes sees every event once, in order, on both", () =>
    Effect.gen(function*() {
      const gate = new Gate()
      const [a, b] = yield* nodes(gate, 2)
      const onA = yield* Effect.promise(() => a!.connect("alice"))
      const onB = yield* Effect.promise(() => b!.connect("alice"))
      const { thread_id } = yield* Effect.promise(() => onA.request({ type: "create_thread" }))
      yield* Effect.promise(() => onB.request({ type: "join_thread", thread_id }))
      const sent = yield* Effect.promise(() => onA.request({ type: "send_message", thread_id, content: "go" }))
      gate.openFully()
      const [endA, endB] = yield* Effect.promise(() =>
        Promise.all([onA.waitRunEnd(sent.run_id), onB.waitRunEnd(sent.run_id)])
      )
      expect(endA.event_id).toBe(endB.event_id)
      const seqsA = onA.events(thread_id).map((e) => e.seq)
      const seqsB = onB.events(thread_id).map((e) => e.seq)
      expect(seqsB).toEqual(seqsA)
      expect(new Set(seqsB).size).toBe(seqsB.length)
      expect(seqsB).toEqual([...seqsB].sort((x, y) => x - y))
      expectValidRuns(onB.events(thread_id))
      expect(expectRunShape(onB.events(thread_id), sent.run_id).at(-1)!.event_type).toBe("agent_completed")
      const health = yield* Effect.promise(async () => (await b!.fetch("/health/ready")).json())
      expect(health.components.broker).toMatchObject({ status: "up", kind: "redis" })
    }))

  it.scopedLive("a run started on A, watched on B, is cancelled from C", () =>
    Effect.gen(function*() {
      const gate = new Gate()
      const [a, b, c] = yield* nodes(gate, 3)
      const alice = yield* Effect.promise(() => a!.connect("alice"))
      const { thread_id } = yield* Effect.promise(() => alice.request({ type: "create_thread", members: ["bob"] }))
      const watcher = yield* Effect.promise(() => b!.connect("bob"))
      yield* Effect.promise(() => watcher.request({ type: "join_thread", thread_id }))
      const sent = yield* Effect.promise(() => alice.request({ type: "send_message", thread_id, content: "go" }))
      gate.allow(1)
      yield* Effect.promise(() =>
        watcher.waitFor((f) =>
          f.type === "event" && f.event_type === "agent_response_delta" && f.run_id === sent.run_id
        )
      )
      const canceller = yield* Effect.promise(() => c!.connect("bob"))
      yield* Effect.promise(() => canceller.request({ type: "cancel_run", run_id: sent.run_id }))
      const [seenOnB, seenOnA] = yield* Effect.promise(() =>
        Promise.all([watcher.waitRunEnd(sent.run_id), alice.waitRunEnd(sent.run_id)])
      )
      expect(seenOnB.data).toMatchObject({ code: "cancelled" })
      expect(seenOnA.event_id).toBe(seenOnB.event_id)
      // The owner on A stopped its run at once, its model still waiting at the gate: the end it saw
      // through the broker named the run.
      yield* Effect.promise(() =>
        until(async () => (await Effect.runPromise(service(a!, Supervisor).activeRuns)) === 0, "A stopped the run")
      )
      gate.openFully()
      // The owner on A stores nothing after the end it did not write.
      yield* Effect.sleep(Duration.millis(300))
      const stored = yield* Effect.promise(async () =>
        (await (await a!.fetch(`/api/threads/${thread_id}/events`, { userId: "alice" })).json()).events
      )
      expectValidRuns(stored)
      expect(ofRun(stored, sent.run_id).at(-1)!.event_id).toBe(seenOnB.event_id)
      expect(ofRun(watcher.events(thread_id), sent.run_id).map((e) => e.seq)).toEqual(
        ofRun(stored, sent.run_id).map((e: EventFrame) => e.seq)
      )
    }))

  it.scopedLive("Redis cut off from a node during a streaming run: it catches up from the log, 0 gaps, 0 duplicates", () =>
    Effect.gen(function*() {
      const gate = new Gate()
      const proxy = yield* Effect.acquireRelease(
        Effect.promise(() => TcpProxy.start()),
        (p) => Effect.promise(() => p.close())
      )
      const redis = new URL(redisUrl)
      proxy.target = { host: redis.hostname, port: Number(redis.port || 6379) }
      const database = yield* Layer.memoize(TestDatabaseLive())
      const node = (url: string) =>
        Effect.map(
          Layer.build(TestServer.layer({
            model: gatedModel(gate, 6),
            database,
            broker: BrokerRedis({ url: Redacted.make(url), retry })
          })),
          Context.get(TestServer)
        )
      const a = yield* node(redisUrl)
      const b = yield* node(`redis://127.0.0.1:${proxy.port}`)
      const alice = yield* Effect.promise(() => a.connect("alice"))
      const { thread_id } = yield* Effect.promise(() => alice.request({ type: "create_thread", members: ["bob"] }))
      const bob = yield* Effect.promise(() => b.connect("bob"))
      yield* Effect.promise(() => bob.request({ type: "join_thread", thread_id }))
      const sent = yield* Effect.promise(() => alice.request({ type: "send_message", thread_id, content: "go" }))
      gate.allow(2)
      yield* Effect.promise(() =>
        until(
          async () => bob.events(thread_id).filter((e) => e.event_type === "agent_response_delta").length >= 2,
          "two deltas on B"
        )
      )
      // B loses Redis: what A publishes meanwhile, the run's end included, never reaches it through Redis.
      proxy.cut()
      yield* Effect.promise(() =>
        until(
          async () => (await (await b.fetch("/health/ready")).json()).components.broker.status === "down",
          "B sees Redis down"
        )
      )
      gate.openFully()
      yield* Effect.promise(() => alice.waitRunEnd(sent.run_id))
      proxy.restore()
      const end = yield* Effect.promise(() => bob.waitRunEnd(sent.run_id, 20_000))
      expect(end.event_type).toBe("agent_completed")
      const seqs = bob.events(thread_id).map((e) => e.seq)
      expect(seqs).toEqual(alice.events(thread_id).map((e) => e.seq))
      expect(seqs).toEqual(Array.from({ length: seqs.length }, (_, i) => seqs[0]! + i))
      expectValidRuns(bob.events(thread_id))
    }))

  it.scopedLive("stops at startup, naming Redis and its address, when Redis does not answer", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(Layer.build(BrokerRedis({ url: Redacted.make("redis://127.0.0.1:1"), retry })))
      expect(error._tag).toBe("StartupError")
      expect(error.message).toMatch(/^Broker failed to start: Redis unreachable at 127\.0\.0\.1:1 after 3 attempts/)
    }))
})

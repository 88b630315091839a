/**
 * Several nodes on one database, as a fleet behind a load balancer has them,
 * the same suite on each broker: Redis (BROKER=redis) and PostgreSQL's
 * LISTEN/NOTIFY (BROKER=postgres, on the machine's PostgreSQL when the
 * suites have one). A user's connections on two nodes, a run started on one
 * and watched and cancelled from the others, a node cut off from its broker
 * mid-run. Each node is a whole server graph with its own hub, supervisor
 * and broker connections.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import { describe, expect, it } from "@effect/vitest"
import { Context, Duration, Effect, Layer, Option, Redacted, type Scope } from "effect"
import { randomUUID } from "node:crypto"
import type { GraphLayers } from "../../layers/Graph.ts"
import { freshPostgres } from "../../layers/Test.ts"
import { AppConfig, AppConfigTest } from "../../src/config/AppConfig.ts"
import { Broker } from "../../src/eventlog/Broker.ts"
import { EventStore } from "../../src/eventlog/EventStore.ts"
import { BrokerPostgres } from "../../src/eventlog/PgBroker.ts"
import { BrokerRedis } from "../../src/eventlog/RedisBroker.ts"
import { Supervisor } from "../../src/runs/Supervisor.ts"
import type { ChatClient, EventFrame } from "../utils/ChatClient.ts"
import { expectRunShape, expectValidRuns } from "../utils/invariants.ts"
import { Gate, gatedModel } from "../utils/Models.ts"
import { TcpProxy } from "../utils/TcpProxy.ts"
import { TestDatabaseLive, testDatabaseUrl } from "../utils/TestDatabase.ts"
import { service, TestServer } from "../utils/TestServer.ts"
import { until } from "../utils/until.ts"

/** `.ci/run` sets it and starts Redis; a developer's machine has it on the default port. */
const redisUrl = process.env.TEST_REDIS_URL !== undefined && process.env.TEST_REDIS_URL !== ""
  ? process.env.TEST_REDIS_URL
  : "redis://127.0.0.1:6379"
const retry = { attempts: 3, baseDelay: Duration.millis(50), maxElapsed: Duration.seconds(2) }

/** `url` with its host and port those of `proxy`. */
const via = (url: string, proxy: TcpProxy | undefined) => {
  if (proxy === undefined) return url
  const parsed = new URL(url)
  parsed.hostname = "127.0.0.1"
  parsed.port = String(proxy.port)
  return parsed.toString()
}

interface Fleet {
  readonly database: GraphLayers<unknown>["database"]
  /** A broker, its connection through `proxy` when given. */
  readonly broker: (proxy?: TcpProxy) => GraphLayers<unknown>["broker"]
  /** Where the broker's server is, for a proxy in front of it. */
  readonly target: { readonly host: string; readonly port: number }
}

const target = (url: string, port: number) => ({ host: new URL(url).hostname, port: Number(new URL(url).port || port) })

const kinds: ReadonlyArray<{ readonly name: string; readonly fleet: Effect.Effect<Fleet, unknown, Scope.Scope> }> = [
  {
    name: "redis",
    fleet: Effect.map(Layer.memoize(TestDatabaseLive()), (database) => ({
      database,
      broker: (proxy) => BrokerRedis({ url: Redacted.make(via(redisUrl, proxy)), retry }),
      target: target(redisUrl, 6379)
    }))
  },
  ...Option.toArray(Option.map(testDatabaseUrl, (adminUrl) => ({
    name: "postgres",
    fleet: Effect.gen(function*() {
      const { layer, url } = yield* freshPostgres(adminUrl)
      const database = yield* Layer.memoize(layer)
      return {
        database,
        broker: (proxy?: TcpProxy) => BrokerPostgres(Option.some(Redacted.make(via(Redacted.value(url), proxy)))),
        target: target(adminUrl, 5432)
      }
    })
  })))
]

const node = (fleet: Fleet, gate: Gate, proxy?: TcpProxy) =>
  Effect.map(
    Layer.build(
      TestServer.layer({ model: gatedModel(gate, 4), database: fleet.database, broker: fleet.broker(proxy) })
    ),
    Context.get(TestServer)
  )

const ofRun = (events: ReadonlyArray<EventFrame>, runId: string) => events.filter((e) => e.run_id === runId)

describe.each(kinds)("several nodes on the $name broker", ({ fleet: makeFleet, name }) => {
  it.scopedLive("a user connected to two nodes sees every event once, in order, on both", () =>
    Effect.gen(function*() {
      const gate = new Gate()
      const fleet = yield* makeFleet
      const [a, b] = [yield* node(fleet, gate), yield* node(fleet, gate)]
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
      expect(health.components.broker).toMatchObject({ status: "up", kind: name })
    }))

  it.scopedLive("a run started on A, watched on B, is cancelled from C", () =>
    Effect.gen(function*() {
      const gate = new Gate()
      const fleet = yield* makeFleet
      const [a, b, c] = [yield* node(fleet, gate), yield* node(fleet, gate), yield* node(fleet, gate)]
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

  it.scopedLive("busy and on_busy hold across nodes: B refuses, then interrupts, the run A owns", () =>
    Effect.gen(function*() {
      const gate = new Gate()
      const fleet = yield* makeFleet
      const [a, b] = [yield* node(fleet, gate), yield* node(fleet, gate)]
      const onA = yield* Effect.promise(() => a.connect("alice"))
      const onB = yield* Effect.promise(() => b.connect("alice"))
      const { thread_id } = yield* Effect.promise(() => onA.request({ type: "create_thread" }))
      const first = yield* Effect.promise(() => onA.request({ type: "send_message", thread_id, content: "one" }))
      const refused = yield* Effect.promise(() =>
        onB.request({ type: "send_message", thread_id, content: "two" }).then(() => "accepted", (e: Error) => e.message)
      )
      expect(refused).toMatch(/busy/)
      const second = yield* Effect.promise(() =>
        onB.request({ type: "send_message", thread_id, content: "three", on_busy: "interrupt" })
      )
      const ended = yield* Effect.promise(() => onB.waitRunEnd(first.run_id))
      expect(ended.data).toMatchObject({ code: "cancelled" })
      // A stopped the run it owned as soon as the end reached it.
      yield* Effect.promise(() =>
        until(async () => (await Effect.runPromise(service(a, Supervisor).activeRuns)) === 0, "A stopped its run")
      )
      gate.openFully()
      expect((yield* Effect.promise(() => onB.waitRunEnd(second.run_id))).event_type).toBe("agent_completed")
      yield* Effect.promise(() => onA.waitRunEnd(second.run_id))
      expectValidRuns(onA.events(thread_id))
      // B joined when it first sent: from there on, both connections have the same events.
      const onBSeqs = onB.events(thread_id).map((e) => e.seq)
      expect(onA.events(thread_id).map((e) => e.seq).filter((seq) => seq >= onBSeqs[0]!)).toEqual(onBSeqs)
    }))

  it.scopedLive("a node cut off from the broker during a streaming run catches up from the log: 0 gaps, 0 duplicates", () =>
    Effect.gen(function*() {
      const gate = new Gate()
      const proxy = yield* Effect.acquireRelease(
        Effect.promise(() => TcpProxy.start()),
        (p) => Effect.promise(() => p.close())
      )
      const fleet = yield* makeFleet
      proxy.target = { ...fleet.target }
      const a = yield* node(fleet, gate)
      const b = yield* node(fleet, gate, proxy)
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
      // B loses its broker: what A publishes meanwhile, the run's end included, never reaches it that way.
      proxy.cut()
      yield* Effect.promise(() =>
        until(
          async () => (await (await b.fetch("/health/ready")).json()).components.broker.status === "down",
          "B sees its broker down"
        )
      )
      // Degraded, not out of service: B still serves, and says what is wrong.
      const ready = yield* Effect.promise(async () => {
        const response = await b.fetch("/health/ready")
        return { code: response.status, body: await response.json() }
      })
      expect(ready.code).toBe(200)
      expect(ready.body.status).toBe("degraded")
      expect(ready.body.components.broker.reason).toMatch(name === "redis" ? /Redis at / : /LISTEN connection/)
      gate.openFully()
      yield* Effect.promise(() => alice.waitRunEnd(sent.run_id))
      // While the broker is lost, B reads the log for its joined threads: the run reaches bob all the same.
      const end = yield* Effect.promise(() => bob.waitRunEnd(sent.run_id, 10_000))
      expect(end.event_type).toBe("agent_completed")
      proxy.restore()
      yield* Effect.promise(() =>
        until(
          async () => (await (await b.fetch("/health/ready")).json()).components.broker.status === "up",
          "B has its broker back"
        )
      )
      const next = yield* Effect.promise(() => alice.request({ type: "send_message", thread_id, content: "again" }))
      yield* Effect.promise(() => bob.waitRunEnd(next.run_id, 10_000))
      const seqs = bob.events(thread_id).map((e) => e.seq)
      expect(seqs).toEqual(alice.events(thread_id).map((e) => e.seq))
      expect(seqs).toEqual(Array.from({ length: seqs.length }, (_, i) => seqs[0]! + i))
      expectValidRuns(bob.events(thread_id))
    }))
})

const presenceOf = (client: ChatClient, threadId: string) =>
  client.frames.flatMap((f) => f.type === "presence" && f.thread_id === threadId ? [f.online] : [])

const lastPresence = (client: ChatClient, threadId: string, online: ReadonlyArray<string>) =>
  until(async () => JSON.stringify(presenceOf(client, threadId).at(-1)) === JSON.stringify(online), `${online}`)

describe.each(kinds)("presence across nodes on the $name broker", ({ fleet: makeFleet }) => {
  const ttl = Duration.seconds(2)
  const presenceNode = (fleet: Fleet) =>
    Effect.map(
      Layer.build(TestServer.layer({ database: fleet.database, broker: fleet.broker(), config: { presenceTtl: ttl } })),
      Context.get(TestServer)
    )

  it.scopedLive("the ack on one node lists members connected on another, and each change reaches every node", () =>
    Effect.gen(function*() {
      // Redis and PostgreSQL outlive the test: its users are its own.
      const [aliceId, bobId] = [`alice-${randomUUID()}`, `bob-${randomUUID()}`]
      const fleet = yield* makeFleet
      const [a, b, c] = [yield* presenceNode(fleet), yield* presenceNode(fleet), yield* presenceNode(fleet)]
      const alice = yield* Effect.promise(() => a.connect(aliceId))
      const { thread_id } = yield* Effect.promise(() => alice.request({ type: "create_thread", members: [bobId] }))
      const ack = yield* Effect.promise(() => alice.request({ type: "join_thread", thread_id }))
      expect(ack.online).toEqual([aliceId])
      const bob = yield* Effect.promise(() => b.connect(bobId))
      yield* Effect.promise(() => lastPresence(alice, thread_id, [aliceId, bobId]))
      const aliceOnC = yield* Effect.promise(() => c.connect(aliceId))
      const ackOnC = yield* Effect.promise(() => aliceOnC.request({ type: "join_thread", thread_id }))
      expect(ackOnC.online).toEqual([aliceId, bobId])
      bob.close()
      yield* Effect.promise(() =>
        Promise.all([lastPresence(alice, thread_id, [aliceId]), lastPresence(aliceOnC, thread_id, [aliceId])])
      )
      expect(presenceOf(alice, thread_id)).toEqual([[aliceId, bobId], [aliceId]])
    }))

  it.scopedLive("a node that stops renewing (it crashed) loses its users within the TTL and a quarter", () =>
    Effect.gen(function*() {
      // Redis and PostgreSQL outlive the test: its users are its own.
      const [aliceId, bobId] = [`alice-${randomUUID()}`, `bob-${randomUUID()}`]
      const fleet = yield* makeFleet
      const a = yield* presenceNode(fleet)
      // A node that holds bob once and then says nothing more, as a crashed one would.
      const crashed = yield* Layer.build(
        fleet.broker().pipe(
          Layer.provide(Layer.mergeAll(
            Layer.succeed(AppConfig, service(a, AppConfig)),
            Layer.succeed(EventStore, service(a, EventStore)),
            Layer.succeed(SqlClient.SqlClient, service(a, SqlClient.SqlClient))
          ))
        )
      )
      const alice = yield* Effect.promise(() => a.connect(aliceId))
      const { thread_id } = yield* Effect.promise(() => alice.request({ type: "create_thread", members: [bobId] }))
      yield* Effect.promise(() => alice.request({ type: "join_thread", thread_id }))
      const presence = Context.get(crashed, Broker).presence
      yield* presence.hold([bobId], [])
      const held = Date.now()
      yield* presence.announce([bobId])
      yield* Effect.promise(() => lastPresence(alice, thread_id, [aliceId, bobId]))
      yield* Effect.promise(() => lastPresence(alice, thread_id, [aliceId]))
      const gone = Date.now() - held
      expect(gone).toBeGreaterThanOrEqual(Duration.toMillis(ttl) - 100)
      expect(gone).toBeLessThan(Duration.toMillis(ttl) * 1.25 + 1500)
    }))
})

describe("a broker that cannot start", () => {
  it.scopedLive("stops at startup, naming Redis and its address, when Redis does not answer", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(
        Layer.build(
          BrokerRedis({ url: Redacted.make("redis://127.0.0.1:1"), retry }).pipe(Layer.provide(AppConfigTest()))
        )
      )
      expect(error._tag).toBe("StartupError")
      expect(error.message).toMatch(/^Broker failed to start: Redis unreachable at 127\.0\.0\.1:1 after 3 attempts/)
    }))

  it.scopedLive("refuses BROKER=postgres without a real PostgreSQL, saying why", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(
        Layer.build(TestServer.layer({ broker: BrokerPostgres(Option.none()), database: TestDatabaseLive() }))
      )
      expect(String(error)).toMatch(/BROKER=postgres needs a real PostgreSQL \(DATABASE_URL\)/)
    }))
})

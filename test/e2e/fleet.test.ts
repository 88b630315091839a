/**
 * A fleet of real server processes on loopback, as production runs them
 * behind a load balancer: two or three nodes sharing a fresh database on
 * the machine's PostgreSQL, the same suite on each broker (BROKER=redis,
 * BROKER=postgres). Each node is a process of its own, its model an
 * OpenAI-compatible fake that streams slowly, so what happens to a node
 * happens in the middle of an answer:
 *
 * - a node killed with SIGKILL, one run streaming and one in a tool call:
 *   a surviving node ends both once their lease expires, the open tool call
 *   closed first, and the stored log keeps every run rule;
 * - a rolling restart (SIGTERM to each node in turn, which drains and
 *   closes its sockets with 1001, then a new process on its port): clients
 *   move to a live node and replay from their last seq, and end up with
 *   exactly the stored log, nothing lost, nothing twice;
 * - the broker interrupted while a node watches a run of another (a
 *   private redis-server stopped and started again; the LISTEN connections
 *   terminated on PostgreSQL): the watcher misses nothing and sees the end.
 *
 * Startup without Redis is test/startup.test.ts's. The in-process version
 * of these nodes, with their internals in reach, is nodes.test.ts.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Option } from "effect"
import { randomUUID } from "node:crypto"
import { ORPHANED } from "../../src/runs/Leases.ts"
import type { ChatClient, EventFrame } from "../utils/ChatClient.ts"
import { type Answer, FakeLlmServer } from "../utils/FakeLlmServer.ts"
import { type Fleet, type FleetBroker, type FleetNode, Follower, makeFleet } from "../utils/Fleet.ts"
import { within } from "../utils/process.ts"
import { privateRedis } from "../utils/RedisServer.ts"
import { eventsOfRun, runViolations } from "../utils/RunInvariants.ts"
import { testDatabaseUrl } from "../utils/TestDatabase.ts"
import { until } from "../utils/until.ts"

/**
 * `.ci/run` sets both. Real processes need a real PostgreSQL to share (PGlite serves one process): without
 * TEST_DATABASE_URL the suite uses the default local server, as it uses the default local Redis.
 */
const adminUrl = Option.getOrElse(testDatabaseUrl, () => "postgres://postgres@127.0.0.1:5432/postgres")
const sharedRedis = process.env.TEST_REDIS_URL !== undefined && process.env.TEST_REDIS_URL !== ""
  ? process.env.TEST_REDIS_URL
  : "redis://127.0.0.1:6379"

const PATH = "/v1/chat/completions"
const MODEL = "fleet-model"

const chunk = (delta: object, finish: string | null = null) => ({
  id: "chatcmpl-fleet",
  object: "chat.completion.chunk",
  created: 1,
  model: MODEL,
  choices: [{ index: 0, delta, finish_reason: finish }]
})
const DONE = "data: [DONE]"

/** The bytes the fake writes for one SSE event, so a stream can be cut at every event. */
const frameBytes = (event: unknown) =>
  Buffer.byteLength(typeof event === "string" ? event : `data: ${JSON.stringify(event)}`) + 2

/** An answer written one SSE event at a time, `delayMs` apart; left open after the last when `hang`. */
const paced = (events: ReadonlyArray<unknown>, delayMs: number, hang = false): Answer => ({
  kind: "sse",
  events,
  split: events.map(frameBytes),
  delayMs,
  hang
})

/** `pieces` deltas, one every `delayMs`, then the end (or nothing, when `hang`: a model still answering). */
const streamed = (pieces: number, delayMs: number, hang = false) =>
  paced(
    [
      ...Array.from({ length: pieces }, (_, i) => chunk({ content: `piece ${i}. ` })),
      ...(hang ? [] : [chunk({}, "stop"), DONE])
    ],
    delayMs,
    hang
  )

const CALL_ID = "call_fleet_1"

/** Two deltas, then a call of the calculator on 6*7. */
const toolCall = (delayMs: number) =>
  paced([
    chunk({ content: "Let me " }),
    chunk({ content: "compute. " }),
    chunk({
      tool_calls: [{ index: 0, id: CALL_ID, type: "function", function: { name: "calculator", arguments: "" } }]
    }),
    chunk({ tool_calls: [{ index: 0, function: { arguments: "{\"expression\":\"6*7\"}" } }] }),
    chunk({}, "tool_calls"),
    DONE
  ], delayMs)

const fakeLlm = Effect.acquireRelease(
  Effect.promise(async () => {
    const fake = await FakeLlmServer.start()
    fake.always("/v1/models", { kind: "json", body: { object: "list", data: [{ id: MODEL }] } })
    return fake
  }),
  (fake) => Effect.promise(() => fake.close())
)

const llmEnv = (fake: FakeLlmServer) => ({
  LLM_PROVIDER: "openai-chat",
  LLM_BASE_URL: `${fake.url}/v1`,
  LLM_MODEL: MODEL,
  LLM_API_KEY: "sk-fleet-test"
})

const createThread = async (client: ChatClient, members: ReadonlyArray<string>) =>
  (await client.request({ type: "create_thread", members })).thread_id as string

const send = async (client: ChatClient, threadId: string, content: string) =>
  (await client.request({ type: "send_message", thread_id: threadId, content })).run_id as string

/** Joins the thread from seq 0 and resolves with every stored event, once the replay reached the head. */
const replay = async (client: ChatClient, threadId: string) => {
  const ack = await client.request({ type: "join_thread", thread_id: threadId, after_seq: 0 })
  await client.until(
    () => (client.events(threadId).at(-1)?.seq ?? 0) >= ack.head_seq ? true : undefined,
    10_000,
    `the replay of ${threadId} up to ${ack.head_seq}`
  )
  return client.events(threadId)
}

const ids = (events: ReadonlyArray<EventFrame>) => events.map((e) => e.event_id)

const runningRuns = async (fleet: Fleet) =>
  (await fleet.query<{ n: number }>("SELECT count(*)::int AS n FROM runs WHERE status = 'running'"))[0]!.n

const headSeq = async (fleet: Fleet, threadId: string) =>
  (await fleet.query<{ head_seq: number }>("SELECT head_seq FROM threads WHERE id = $1", [threadId]))[0]!.head_seq

/** Whether each run has stored an answer delta: it is streaming (or was). */
const streaming = async (fleet: Fleet, runIds: ReadonlyArray<string>) =>
  (await fleet.query<{ n: number }>(
    "SELECT count(DISTINCT run_id)::int AS n FROM events WHERE event_type = 'agent_response_delta' AND run_id = ANY($1)",
    [runIds]
  ))[0]!.n === runIds.length

const brokerStatus = async (node: FleetNode) =>
  (await (await fetch(`${node.httpUrl}/health/ready`)).json()).components.broker.status as string

describe.each<{ readonly broker: FleetBroker }>([{ broker: "redis" }, { broker: "postgres" }])(
  "a fleet of server processes on the $broker broker",
  ({ broker }) => {
    const redisUrl = broker === "redis" ? sharedRedis : undefined

    it.scopedLive(
      "a node killed mid-run: a survivor ends its runs once their lease expires, the open tool call first; its users drop out",
      () =>
        Effect.gen(function*() {
          const fake = yield* fakeLlm
          const fleet = yield* makeFleet(adminUrl, {
            broker,
            ...(redisUrl === undefined ? {} : { redisUrl }),
            nodes: 2,
            proxied: [0],
            env: { ...llmEnv(fake), RUN_LEASE_MS: "1500", PRESENCE_TTL_MS: "2000" }
          })
          const [doomed, survivor] = fleet.nodes as [FleetNode, FleetNode]
          // Presence outlives the test in the shared Redis: its users are its own.
          const [aliceId, bobId] = [`alice-${randomUUID()}`, `bob-${randomUUID()}`]
          const { bob, runs, threads } = yield* Effect.promise(async () => {
            const alice = await fleet.connect(doomed, aliceId)
            const bob = await fleet.connect(survivor, bobId)
            const threads = [await createThread(alice, [bobId]), await createThread(alice, [bobId])] as const
            for (const threadId of threads) {
              const ack = await bob.request({ type: "join_thread", thread_id: threadId, after_seq: 0 })
              expect(ack.online).toEqual([aliceId, bobId])
            }
            // A long answer, still streaming when the node dies…
            fake.script(PATH, streamed(100, 60))
            const first = await send(alice, threads[0], "tell me a long story")
            await bob.waitFor((f) =>
              f.type === "event" && f.event_type === "agent_response_delta" && f.run_id === first
            )
            // …and a tool call, its tool_executing stored: the node loses its database as it stores the
            // tool's result (the only thing it sends with a "result" in it), and is killed.
            fake.script(PATH, toolCall(60))
            const cut = doomed.proxy!.cutWhen("\"result\":", "\"result\":", false)
            const second = await send(alice, threads[1], "what is 6*7?")
            await within(cut, 10_000, "the tool's result never reached the database")
            const exit = await doomed.stop("SIGKILL")
            expect(exit.signal).toBe("SIGKILL")
            return { bob, runs: [first, second] as const, threads }
          })
          const killedAt = Date.now()

          // The survivor ends them once their lease has expired: nobody else will.
          const ends = yield* Effect.promise(() => Promise.all(runs.map((runId) => bob.waitRunEnd(runId, 15_000))))
          for (const end of ends) {
            expect(end).toMatchObject({ event_type: "agent_error", data: { code: "internal", message: ORPHANED } })
          }
          // Logged after each end is stored (and sent): the last line may still be on its way.
          const reaped = yield* Effect.promise(() =>
            until(async () => {
              const lines = survivor.logged("ended a run whose process stopped (its lease expired)")
              return lines.length >= runs.length && lines
            }, "the survivor to log the runs it ended")
          )
          expect(reaped.map((l) => l.run_id).sort()).toEqual([...runs].sort())
          const streamedRun = eventsOfRun(bob.events(threads[0]), runs[0])
          expect(streamedRun.filter((e) => e.event_type === "agent_response_delta").length).toBeGreaterThan(0)
          const tooled = eventsOfRun(bob.events(threads[1]), runs[1]).map((e) => [e.event_type, e.data.error])
          expect(tooled.slice(-3)).toEqual([
            ["tool_executing", undefined],
            ["tool_completed", "interrupted"],
            ["agent_error", undefined]
          ])

          // The whole stored log, replayed from seq 0 on the survivor: every run rule holds, and it is
          // what the watcher saw live, through the broker and the kill.
          const reader = yield* Effect.promise(() => fleet.connect(survivor, bobId))
          for (const threadId of threads) {
            const log = yield* Effect.promise(() => replay(reader, threadId))
            expect(runViolations(log, { ended: true })).toEqual([])
            expect(ids(log)).toEqual(ids(bob.events(threadId)))
            expect(ids(log)).toEqual(ids(yield* Effect.promise(() => fleet.stored(threadId, bobId))))
          }
          // Ended after their lease had run out, never before.
          const ended = yield* Effect.promise(() =>
            fleet.query<{ after: boolean }>(
              "SELECT ended_at >= lease_expires_at AS after FROM runs WHERE id = ANY($1)",
              [runs]
            )
          )
          expect(ended).toEqual([{ after: true }, { after: true }])
          expect(yield* Effect.promise(() => runningRuns(fleet))).toBe(0)
          const open = yield* Effect.promise(() =>
            fleet.query<{ n: number }>("SELECT count(*)::int AS n FROM run_tool_calls WHERE NOT completed")
          )
          expect(open[0]!.n).toBe(0)

          // Nobody closed alice's connection: her node's hold ran out (PRESENCE_TTL_MS, 2 s), and a
          // survivor's sweep (every quarter of it) told bob she is gone.
          for (const threadId of threads) {
            yield* Effect.promise(() =>
              bob.waitFor((f) => f.type === "presence" && f.thread_id === threadId && f.online.length === 1, 10_000)
            )
            const told = bob.frames.flatMap((f) => f.type === "presence" && f.thread_id === threadId ? [f.online] : [])
            expect(told).toEqual([[bobId]])
          }
          expect(Date.now() - killedAt).toBeLessThan(2000 * 1.25 + 8000)
        }),
      45_000
    )

    it.scopedLive(
      "a rolling restart during streaming: clients follow the 1001s to live nodes, missing nothing, seeing nothing twice",
      () =>
        Effect.gen(function*() {
          const fake = yield* fakeLlm
          const grace = 1000
          const fleet = yield* makeFleet(adminUrl, {
            broker,
            ...(redisUrl === undefined ? {} : { redisUrl }),
            nodes: 3,
            env: { ...llmEnv(fake), SHUTDOWN_GRACE_MS: String(grace) }
          })
          const users = ["alice", "bob", "carol"]
          const outcome = new Map<string, "completed" | "cancelled">()
          const followers = yield* Effect.acquireRelease(
            Effect.sync(() => users.map((user) => new Follower(fleet, user))),
            (followers) => Effect.sync(() => followers.forEach((f) => f.close()))
          )
          // Each node's threads: one for a short answer, one for a long one.
          const { long, short } = yield* Effect.promise(async () => {
            const creator = await fleet.connect(fleet.nodes[0]!, "alice")
            const short = new Map<FleetNode, string>()
            const long = new Map<FleetNode, string>()
            for (const node of fleet.nodes) {
              short.set(node, await createThread(creator, ["bob", "carol"]))
              long.set(node, await createThread(creator, ["bob", "carol"]))
            }
            creator.close()
            for (const [i, follower] of followers.entries()) {
              await follower.attach(fleet.nodes[i]!)
              for (const threadId of [...short.values(), ...long.values()]) await follower.follow(threadId)
            }
            return { long, short }
          })

          for (const restarting of fleet.nodes) {
            yield* Effect.promise(async () => {
              await until(async () => (await runningRuns(fleet)) === 0, "the runs of the last step to end")
              // The node about to restart answers in both its threads: a short answer, over within the
              // grace, and one that never ends, which the drain cancels. The others answer at length, so
              // they still stream when the clients of the restarting node come to them.
              const sends: Array<
                { node: FleetNode; threadId: string; answer: Answer; ends: "completed" | "cancelled" }
              > = [
                { node: restarting, threadId: short.get(restarting)!, answer: streamed(6, 80), ends: "completed" },
                {
                  node: restarting,
                  threadId: long.get(restarting)!,
                  answer: streamed(2, 100, true),
                  ends: "cancelled"
                },
                ...fleet.nodes.filter((n) => n !== restarting).map((node) => ({
                  node,
                  threadId: long.get(node)!,
                  answer: streamed(30, 100),
                  ends: "completed" as const
                }))
              ]
              const started: Array<string> = []
              const own: Array<string> = []
              for (const { answer, ends, node, threadId } of sends) {
                fake.script(PATH, answer)
                const asked = fake.requestsTo(PATH).length
                const sender = await fleet.connect(node, "alice")
                const runId = await send(sender, threadId, `go on ${node.name}`)
                // Gone at the ack, as a client that fires and forgets: the run goes on without it.
                sender.close()
                // One model request at a time, so each run takes its own scripted answer.
                await until(async () => fake.requestsTo(PATH).length > asked, `the model request of ${runId}`)
                outcome.set(runId, ends)
                started.push(runId)
                if (node === restarting) own.push(runId)
              }
              await until(() => streaming(fleet, started), "every run of the step to stream")

              const signalled = Date.now()
              const exit = await restarting.stop("SIGTERM")
              expect(exit.code).toBe(0)
              const messages = restarting.logs().map((l) => l.message)
              expect(messages.lastIndexOf("connections closed; stopping")).toBeGreaterThan(
                messages.lastIndexOf("draining")
              )
              // Its runs ended before it exited, within the grace or cancelled by the drain: none was left
              // to a lease.
              const left = await fleet.query<{ id: string; status: string; ended_at: Date }>(
                "SELECT id, status, ended_at FROM runs WHERE id = ANY($1)",
                [own]
              )
              expect(left.map((r) => [r.id, r.status]).sort()).toEqual(
                own.map((id) => [id, outcome.get(id)]).sort()
              )
              // The one that would not end had the whole grace before the drain cancelled it.
              const cancelled = left.find((r) => r.status === "cancelled")!
              expect(cancelled.ended_at.getTime() - signalled).toBeGreaterThanOrEqual(grace - 100)
              await Promise.all(followers.map((f) => f.settled()))
              expect(followers.every((f) => f.node !== restarting)).toBe(true)
              await restarting.start()
            })
          }

          const threads = [...short.values(), ...long.values()]
          yield* Effect.promise(async () => {
            await until(async () => (await runningRuns(fleet)) === 0, "every run to end", 15_000)
            for (const threadId of threads) {
              const head = await headSeq(fleet, threadId)
              for (const follower of followers) {
                await until(
                  async () => follower.lastSeq(threadId) >= head,
                  `${follower.userId} to reach seq ${head} of ${threadId}`
                )
              }
            }
          })
          for (const threadId of threads) {
            const log = yield* Effect.promise(() => fleet.stored(threadId))
            expect(runViolations(log, { ended: true })).toEqual([])
            // Each client saw the whole log, each event once, in order, over all its connections.
            for (const follower of followers) expect(ids(follower.events(threadId))).toEqual(ids(log))
            for (
              const event of log.filter((e) => e.event_type === "agent_completed" || e.event_type === "agent_error")
            ) {
              const expected = outcome.get(event.run_id!)
              expect(expected).toBeDefined()
              if (expected === "completed") expect(event.event_type).toBe("agent_completed")
              else {
                expect(event).toMatchObject({
                  event_type: "agent_error",
                  data: { code: "cancelled", message: "the server shut down" }
                })
              }
            }
          }
          // Every client was moved at least once, each time by a 1001.
          for (const follower of followers) {
            expect(follower.closes.length).toBeGreaterThan(0)
            expect(follower.closes.map((c) => c.code).filter((code) => code !== 1001)).toEqual([])
          }
          expect(outcome.size).toBe(fleet.nodes.length * 4)
        }),
      60_000
    )

    it.scopedLive(
      "the broker interrupted during a run watched from another node: delivered from the log meanwhile, 0 gaps, 0 duplicates, and the end",
      (ctx) =>
        Effect.gen(function*() {
          const fake = yield* fakeLlm
          // Never the machine's Redis: other suites use it.
          const redis = broker === "redis" ? yield* privateRedis : undefined
          const fleet = yield* makeFleet(adminUrl, {
            broker,
            ...(redis === undefined ? {} : { redisUrl: redis.url }),
            nodes: 2,
            env: { ...llmEnv(fake), BROKER_POLL_MS: "200" }
          })
          const [owner, watching] = fleet.nodes as [FleetNode, FleetNode]
          const { alice, bob, runId, threadId } = yield* Effect.promise(async () => {
            const alice = await fleet.connect(owner, "alice")
            const bob = await fleet.connect(watching, "bob")
            const threadId = await createThread(alice, ["bob"])
            await bob.request({ type: "join_thread", thread_id: threadId, after_seq: 0 })
            fake.script(PATH, streamed(40, 60))
            const runId = await send(alice, threadId, "tell me a long story")
            await until(
              async () => bob.events(threadId).filter((e) => e.event_type === "agent_response_delta").length >= 2,
              "two deltas on the watching node"
            )
            return { alice, bob, runId, threadId }
          })
          const arrivals: Array<{ readonly seq: number; readonly at: number }> = []
          bob.ws.on("message", (data: Buffer) => {
            const frame = JSON.parse(data.toString())
            if (frame.type === "event") arrivals.push({ seq: frame.seq, at: Date.now() })
          })

          const outage = yield* Effect.promise(async () => {
            if (redis !== undefined) {
              await redis.stop()
              await until(async () => (await brokerStatus(watching)) === "down", "the watching node to see Redis down")
              const from = Date.now()
              const headAtDown = await headSeq(fleet, threadId)
              // The run goes on meanwhile: five more events stored while the broker is down.
              await until(async () => (await headSeq(fleet, threadId)) >= headAtDown + 5, "five events in the outage")
              // The watching node reads them from the log meanwhile (BROKER_POLL_MS), Redis still down.
              await until(async () => bob.events(threadId).some((e) => e.seq >= headAtDown + 5), "polled events")
              await redis.start()
              const back = await until(
                async () => watching.logged("the Redis broker reconnected")[0],
                "the watching node to reconnect to Redis"
              )
              return { from, to: Date.parse(back.time!) }
            }
            const from = Date.now()
            const cut = await fleet.query<{ ok: boolean }>(
              "SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity WHERE datname = $1 AND query ILIKE 'LISTEN%'",
              [fleet.databaseName]
            )
            // One LISTEN connection per node.
            expect(cut).toEqual([{ ok: true }, { ok: true }])
            const back = await until(
              async () => watching.logged("the PostgreSQL broker listens")[1],
              "the watching node to LISTEN again"
            )
            return { from, to: Date.parse(back.time!) }
          })

          const end = yield* Effect.promise(() => bob.waitRunEnd(runId, 20_000))
          expect(end.event_type).toBe("agent_completed")
          yield* Effect.promise(() => alice.waitRunEnd(runId))
          const seen = bob.events(threadId)
          expect(runViolations(seen, { ended: true })).toEqual([])
          expect(seen.map((e) => e.seq)).toEqual(Array.from({ length: seen.length }, (_, i) => i + 1))
          expect(ids(seen)).toEqual(ids(yield* Effect.promise(() => fleet.stored(threadId))))
          expect(yield* Effect.promise(() => brokerStatus(watching))).toBe("up")

          // Events reached the watcher while Redis was down, by polling the log. (PostgreSQL's LISTEN is
          // back in about 100 ms, too soon to tell polling from the resync: recorded only.)
          const during = arrivals.filter((a) => a.at > outage.from && a.at < outage.to).length
          if (broker === "redis") expect(during).toBeGreaterThanOrEqual(5)
          const storedDuring = seen.filter((e) => {
            const at = Date.parse(e.timestamp)
            return at > outage.from && at < outage.to
          }).length
          yield* Effect.promise(() =>
            ctx.annotate(
              `${broker} outage of ${outage.to - outage.from} ms: ${storedDuring} events stored, ` +
                `${during} delivered to the watcher before its broker was back`
            )
          )
        }),
      45_000
    )
  }
)

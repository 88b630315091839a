/**
 * The hub's delivery guarantees, on the in-memory event log with fake
 * sockets: what a join replays and when it goes live, gap repair, removal,
 * leaving, releasing, and the shutdown close (slow consumers: HubBackpressure).
 */
import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect, Exit, Fiber, Option, Scope } from "effect"
import { CloseCode } from "../../src/protocol/Codes.ts"
import { draft } from "../../src/protocol/Events.ts"
import { eventually, pause } from "../utils/FakeSocket.ts"
import { type Client, makeHubEnv, range } from "../utils/GatewayHarness.ts"

const T = "thread-1"
const zero = { connections: 0, threads: 0, subscriptions: 0, users: 0 }
const hasSeq = (client: Client, seq: number) => () => client.socket.seqs(T).includes(seq)

describe("Hub", () => {
  it.scopedLive("a join without after_seq delivers only events stored after it, none of the past", () =>
    Effect.gen(function*() {
      const env = yield* makeHubEnv()
      env.thread(T, ["bob"])
      yield* env.post(T, 3)
      const bob = yield* env.connect("bob")
      let head = -1
      expect(yield* env.hub.join(bob.connection, T, Option.none(), (h) => head = h)).toBe(3)
      expect(head).toBe(3)
      yield* env.post(T, 2)
      yield* eventually("bob has seq 5", hasSeq(bob, 5))
      expect(bob.socket.seqs(T)).toEqual([4, 5])
    }))

  it.scopedLive("a join with after_seq replays, then goes live with no gap and no duplicate while events keep coming", () =>
    Effect.gen(function*() {
      const env = yield* makeHubEnv()
      env.thread(T, ["alice", "bob"])
      yield* env.post(T, 40)
      const bob = yield* env.connect("bob")
      // Slow reads widen both windows of the join: between subscribing and the head, and during the replay.
      env.slow.ms = 8
      const writer = yield* Effect.forEach(range(1, 100), () => Effect.zipRight(env.post(T), pause(1)), {
        discard: true
      }).pipe(Effect.fork)
      yield* pause(3)
      const head = yield* env.hub.join(bob.connection, T, Option.some(10), () => {})
      yield* Fiber.join(writer)
      env.slow.ms = 0
      expect(head).toBeGreaterThan(40)
      expect(head).toBeLessThan(140)
      yield* eventually("bob has seq 140", hasSeq(bob, 140))
      yield* pause(10)
      expect(bob.socket.seqs(T)).toEqual(range(11, 140))
    }))

  it.scopedLive("events committed on either side of the join's head are each delivered once, none lost", () =>
    Effect.gen(function*() {
      const env = yield* makeHubEnv()
      env.thread(T, ["bob"])
      yield* env.post(T, 5)
      const bob = yield* env.connect("bob")
      // Held before its check: seq 6 is committed after the join subscribed and before the head is read.
      yield* env.reads.close
      yield* env.answers.close
      const join = yield* Effect.fork(env.hub.join(bob.connection, T, Option.some(3), () => {}))
      yield* pause(5)
      yield* env.post(T)
      yield* env.reads.open
      yield* eventually("the head is read", () => env.readsPassed.count === 1)
      // Seq 7 is committed after the head was read, before the join hears of it; nothing comes after it.
      yield* env.post(T)
      yield* env.answers.open
      expect(yield* Fiber.join(join)).toBe(6)
      yield* eventually("bob has seq 7", hasSeq(bob, 7))
      yield* pause(10)
      expect(bob.socket.seqs(T)).toEqual([4, 5, 6, 7])
    }))

  it.scopedLive("a live event whose seq jumps is preceded by the missing events, fetched from the log in order", () =>
    Effect.gen(function*() {
      const env = yield* makeHubEnv()
      env.thread(T, ["bob"])
      const bob = yield* env.connect("bob")
      yield* env.hub.join(bob.connection, T, Option.none(), () => {})
      yield* env.post(T)
      yield* eventually("bob has seq 1", hasSeq(bob, 1))
      const lost = yield* env.storeUnpublished(T)
      yield* env.post(T)
      yield* eventually("bob has seq 3", hasSeq(bob, 3))
      yield* env.post(T)
      yield* eventually("bob has seq 4", hasSeq(bob, 4))
      expect(bob.socket.seqs(T)).toEqual([1, 2, 3, 4])
      expect(bob.socket.ofType("event", T)[1]!.event_id).toBe(lost.event_id)
    }))

  it.scopedLive("a members_changed removing bob is his connections' last event of the thread; alice goes on", () =>
    Effect.gen(function*() {
      const env = yield* makeHubEnv()
      env.thread(T, ["alice", "bob"])
      const alice = yield* env.connect("alice")
      const bobs = [yield* env.connect("bob"), yield* env.connect("bob")]
      for (const client of [alice, ...bobs]) yield* env.hub.join(client.connection, T, Option.none(), () => {})
      expect((yield* env.hub.stats).subscriptions).toBe(3)
      yield* env.post(T)
      yield* env.log.append(T, [draft("members_changed", null, { added: [], removed: ["bob"], by: "alice" })])
      env.members.get(T)!.delete("bob")
      yield* env.post(T, 2)
      yield* eventually("alice has seq 4", hasSeq(alice, 4))
      yield* pause(10)
      expect(alice.socket.seqs(T)).toEqual([1, 2, 3, 4])
      for (const bob of bobs) {
        expect(bob.socket.seqs(T)).toEqual([1, 2])
        expect(bob.socket.frames.at(-1)).toMatchObject({ event_type: "members_changed", data: { removed: ["bob"] } })
        expect(bob.connection.threads.has(T)).toBe(false)
      }
      expect(yield* env.hub.stats).toEqual({ connections: 3, threads: 1, subscriptions: 1, users: 2 })
    }))

  it.scopedLive("a removal met in the replay ends the join there too", () =>
    Effect.gen(function*() {
      const env = yield* makeHubEnv()
      // Bob still passes the check: his removal committed after it, before the replay read the log.
      env.thread(T, ["alice", "bob"])
      yield* env.post(T)
      yield* env.log.append(T, [draft("members_changed", null, { added: [], removed: ["bob"], by: "alice" })])
      yield* env.post(T)
      const bob = yield* env.connect("bob")
      yield* env.hub.join(bob.connection, T, Option.some(0), () => {})
      yield* env.post(T)
      yield* pause(20)
      expect(bob.socket.seqs(T)).toEqual([1, 2])
      expect((yield* env.hub.stats).subscriptions).toBe(0)
    }))

  it.scopedLive("leaving a thread stops its delivery to that connection only", () =>
    Effect.gen(function*() {
      const env = yield* makeHubEnv()
      env.thread(T, ["alice", "bob"])
      const alice = yield* env.connect("alice")
      const bob = yield* env.connect("bob")
      for (const client of [alice, bob]) yield* env.hub.join(client.connection, T, Option.none(), () => {})
      yield* env.post(T)
      yield* eventually("bob has seq 1", hasSeq(bob, 1))
      expect(yield* env.hub.leave(bob.connection, T)).toBe(true)
      expect(yield* env.hub.leave(bob.connection, T)).toBe(false)
      yield* env.post(T, 2)
      yield* eventually("alice has seq 3", hasSeq(alice, 3))
      yield* pause(10)
      expect(bob.socket.seqs(T)).toEqual([1])
      expect((yield* env.hub.stats).subscriptions).toBe(1)
    }))

  it.scopedLive("releasing the registrations leaves no connection, thread, subscription or user behind", () =>
    Effect.gen(function*() {
      const env = yield* makeHubEnv()
      env.thread(T, ["alice", "bob"])
      env.thread("thread-2", ["bob"])
      const clients = [yield* env.connect("alice"), yield* env.connect("bob"), yield* env.connect("bob")]
      for (const client of clients) yield* env.hub.join(client.connection, T, Option.none(), () => {})
      yield* env.hub.join(clients[2]!.connection, "thread-2", Option.none(), () => {})
      expect(yield* env.hub.stats).toEqual({ connections: 3, threads: 2, subscriptions: 4, users: 2 })
      expect(env.hub.connectionsOf("bob")).toBe(2)
      yield* Effect.forEach(clients, (client) => Scope.close(client.scope, Exit.void), { discard: true })
      expect(yield* env.hub.stats).toEqual(zero)
      expect(env.hub.connectionsOf("bob")).toBe(0)
    }))

  it.scopedLive("closeAll delivers what was stored before it, then closes every connection with the code given", () =>
    Effect.gen(function*() {
      const env = yield* makeHubEnv()
      env.thread(T, ["alice", "bob"])
      const clients = [yield* env.connect("alice"), yield* env.connect("bob")]
      for (const client of clients) yield* env.hub.join(client.connection, T, Option.none(), () => {})
      // Bob's last write is still in flight when the shutdown comes; the close waits for it.
      clients[1]!.socket.hold()
      yield* env.post(T, 20)
      const closing = yield* env.hub.closeAll(CloseCode.GoingAway, "shutting down", Duration.seconds(5)).pipe(
        Effect.fork
      )
      yield* eventually("alice is closed", () => clients[0]!.socket.closes.length > 0)
      expect(clients[1]!.socket.closes).toEqual([])
      clients[1]!.socket.release()
      yield* Fiber.join(closing)
      for (const client of clients) {
        expect(client.socket.seqs(T)).toEqual(range(1, 20))
        expect(client.socket.closes).toEqual([{ code: CloseCode.GoingAway, reason: "shutting down", afterFrames: 20 }])
      }
      expect(yield* env.hub.stats).toEqual(zero)
    }))
})

/**
 * The hub and slow clients: a client that stops reading is closed 1013
 * once its outbox or its catch-up buffer overflows, and only then, while
 * the others go on receiving everything.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Fiber, Option } from "effect"
import { CloseCode } from "../../src/protocol/Codes.ts"
import { eventually, pause } from "../utils/FakeSocket.ts"
import { type Client, makeHubEnv, range } from "../utils/GatewayHarness.ts"

const T = "thread-1"
const hasSeq = (client: Client, seq: number) => () => client.socket.seqs(T).includes(seq)

describe("Hub backpressure", () => {
  it.scopedLive("a client that stops reading is closed 1013 once its outbox overflows; the others get everything", () =>
    Effect.gen(function*() {
      const env = yield* makeHubEnv({ outboxCapacity: 4 })
      env.thread(T, ["alice", "bob"])
      const alice = yield* env.connect("alice")
      const bob = yield* env.connect("bob")
      for (const client of [alice, bob]) yield* env.hub.join(client.connection, T, Option.none(), () => {})
      bob.socket.hold()
      // One at a time, so alice (who reads) keeps up with an outbox this small.
      const postSlowly = (count: number) =>
        Effect.forEach(range(1, count), () => Effect.zipRight(env.post(T), pause(3)), { discard: true })
      // The first goes out in a write bob never finishes; four more fill his outbox behind it…
      yield* postSlowly(5)
      expect(bob.socket.closes).toEqual([])
      // …and the sixth overflows it.
      yield* postSlowly(5)
      yield* eventually("alice has seq 10", hasSeq(alice, 10))
      expect(alice.socket.seqs(T)).toEqual(range(1, 10))
      expect(alice.socket.closes).toEqual([])
      expect(bob.socket.closes.map((c) => c.code)).toEqual([CloseCode.TryAgainLater])
      expect(bob.socket.seqs(T)).toEqual([1])
      expect(env.hub.counters.slowConsumerCloses).toBe(1)
      yield* eventually("bob's registration is released", () => bob.connection.threads.size === 0)
      expect((yield* env.hub.stats).connections).toBe(1)
    }))

  it.scopedLive("a client that stops reading during its replay is closed 1013 once its catch-up buffer overflows", () =>
    Effect.gen(function*() {
      // The catch-up buffer is its own setting (WS_CATCHUP_BUFFER), set apart from the outbox's.
      const env = yield* makeHubEnv({ outboxCapacity: 4, catchUpBuffer: 6 })
      env.thread(T, ["bob"])
      yield* env.post(T, 20)
      const bob = yield* env.connect("bob")
      bob.socket.hold()
      const join = yield* Effect.fork(env.hub.join(bob.connection, T, Option.some(0), () => {}))
      yield* eventually("the replay is stuck behind the first write", hasSeq(bob, 4))
      // Live events meanwhile are buffered, up to the catch-up buffer (not the outbox's 4): the seventh
      // is one too many.
      for (let i = 0; i < 6; i++) yield* env.post(T)
      yield* pause(10)
      expect(bob.socket.closes).toEqual([])
      yield* env.post(T)
      yield* eventually("bob is closed", () => bob.socket.closes.length > 0)
      expect(bob.socket.closes.map((c) => c.code)).toEqual([CloseCode.TryAgainLater])
      // The replay waiting for room ends with the connection.
      yield* Fiber.join(join)
      expect(bob.socket.seqs(T)).toEqual([1, 2, 3, 4])
    }))

  it.scopedLive("a client that reads is not closed when a live event waits behind a replay that filled its outbox", () =>
    Effect.gen(function*() {
      // Sixteen replayed events fill an outbox of eight twice over: the replay ends with it full.
      const env = yield* makeHubEnv({ outboxCapacity: 8 })
      env.thread(T, ["bob"])
      yield* env.post(T, 16)
      const bob = yield* env.connect("bob")
      // Seq 17 is committed after the head was read, so it waits in the join's buffer for the replay.
      yield* env.answers.close
      const join = yield* Effect.fork(env.hub.join(bob.connection, T, Option.some(0), () => {}))
      yield* eventually("the head is read", () => env.readsPassed.count === 1)
      yield* env.post(T)
      yield* env.answers.open
      yield* Fiber.join(join)
      yield* eventually("bob has seq 17", hasSeq(bob, 17))
      expect(bob.socket.closes).toEqual([])
      expect(bob.socket.seqs(T)).toEqual(range(1, 17))
    }))
})

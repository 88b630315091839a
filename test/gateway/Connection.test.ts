/**
 * One connection's behaviour on its own, with a fake socket: the rate
 * bucket (driven by the `now` it is given), the heartbeat, and the outbox
 * with the socket's backpressure.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Fiber, Option } from "effect"
import { Connection, type ConnectionLimits } from "../../src/gateway/Connection.ts"
import { HubCounters } from "../../src/metrics/Metrics.ts"
import { CloseCode } from "../../src/protocol/Codes.ts"
import { FakeSocket, pause } from "../utils/FakeSocket.ts"

const limits: ConnectionLimits = { outboxCapacity: 4, framesPerSecond: 2, frameBurst: 3, floodThreshold: 2 }

const make = (overrides: Partial<ConnectionLimits> = {}) => {
  const socket = new FakeSocket()
  const counters = new HubCounters()
  const connection = new Connection(socket, { userId: "bob", expiresAt: Option.none() }, {
    ...limits,
    ...overrides
  }, counters)
  return { socket, counters, connection }
}

const frame = (n: number) => JSON.stringify({ n })
const sent = (socket: FakeSocket) => socket.frames.map((f) => f.n as number)

// Far from 0, where the bucket's clock starts, so the first refill cannot hide anything.
const t0 = 1_000_000

describe("Connection rate bucket", () => {
  it("takes a burst at once, then refuses", () => {
    const { connection } = make()
    expect([1, 2, 3, 4].map(() => connection.admit(t0))).toEqual([
      "accepted",
      "accepted",
      "accepted",
      "rate_limited"
    ])
  })

  it("refills at framesPerSecond as time passes, up to the burst and no further", () => {
    const { connection } = make()
    for (let i = 0; i < 3; i++) connection.admit(t0)
    expect(connection.admit(t0 + 100)).toBe("rate_limited")
    // Half a second at two a second: one more token.
    expect(connection.admit(t0 + 600)).toBe("accepted")
    expect(connection.admit(t0 + 600)).toBe("rate_limited")
    // An hour idle refills the burst, not an hour's worth.
    const later = t0 + 3_600_000
    expect([1, 2, 3, 4].map(() => connection.admit(later))).toEqual([
      "accepted",
      "accepted",
      "accepted",
      "rate_limited"
    ])
  })

  it("calls it flooding past floodThreshold refusals in a row, and an accepted frame starts the count again", () => {
    const { connection } = make()
    for (let i = 0; i < 3; i++) connection.admit(t0)
    expect([1, 2].map(() => connection.admit(t0))).toEqual(["rate_limited", "rate_limited"])
    expect(connection.admit(t0)).toBe("flooding")
    const { connection: other } = make()
    for (let i = 0; i < 3; i++) other.admit(t0)
    other.admit(t0)
    other.admit(t0)
    expect(other.admit(t0 + 500)).toBe("accepted")
    expect([1, 2, 3].map(() => other.admit(t0 + 500))).toEqual(["rate_limited", "rate_limited", "flooding"])
  })
})

describe("Connection heartbeat", () => {
  it("pings, and terminates a client that left two pings unanswered", () => {
    const { connection, socket } = make()
    connection.heartbeat()
    connection.heartbeat()
    expect(socket.pings).toBe(2)
    expect(socket.terminated).toBe(false)
    connection.heartbeat()
    expect(socket.pings).toBe(2)
    expect(socket.terminated).toBe(true)
    expect(socket.isOpen()).toBe(false)
  })

  it("a pong resets the count", () => {
    const { connection, socket } = make()
    connection.heartbeat()
    connection.heartbeat()
    connection.pong()
    connection.heartbeat()
    connection.heartbeat()
    expect(socket.pings).toBe(4)
    expect(socket.terminated).toBe(false)
    connection.heartbeat()
    expect(socket.terminated).toBe(true)
  })
})

describe("Connection outbox", () => {
  it.live("writes what was pushed in one tick as one batch, and the next only once the socket took it", () =>
    Effect.gen(function*() {
      const { connection, socket } = make()
      socket.hold()
      for (const n of [1, 2, 3]) connection.push(frame(n))
      expect(socket.batches).toEqual([])
      yield* pause()
      expect(socket.batches).toEqual([3])
      connection.push(frame(4))
      connection.push(frame(5))
      yield* pause()
      expect(socket.batches).toEqual([3])
      socket.release()
      yield* pause()
      expect(socket.batches).toEqual([3, 2])
      expect(sent(socket)).toEqual([1, 2, 3, 4, 5])
    }))

  it.live("a full outbox closes the connection with 1013 and drops what it held", () =>
    Effect.gen(function*() {
      const { connection, socket, counters } = make()
      socket.hold()
      connection.push(frame(1))
      yield* pause()
      for (const n of [2, 3, 4, 5]) expect(connection.push(frame(n))).toBe(true)
      expect(connection.push(frame(6))).toBe(false)
      expect(socket.closes.map((c) => c.code)).toEqual([CloseCode.TryAgainLater])
      expect(counters.slowConsumerCloses).toBe(1)
      expect(counters.eventsDropped).toBe(5)
      expect(connection.push(frame(7))).toBe(false)
      socket.release()
      yield* pause()
      expect(sent(socket)).toEqual([1])
      expect(socket.sendsAfterClose).toBe(0)
    }))

  it.live("offer waits for room instead of overflowing, and keeps the order", () =>
    Effect.gen(function*() {
      const { connection, socket } = make()
      socket.hold()
      connection.push(frame(1))
      yield* pause()
      for (const n of [2, 3, 4, 5]) connection.push(frame(n))
      const offered = yield* Effect.fork(Effect.forEach([6, 7], (n) => connection.offer(frame(n))))
      yield* pause()
      expect(Option.isNone(yield* Fiber.poll(offered))).toBe(true)
      expect(socket.closes).toEqual([])
      socket.release()
      yield* Fiber.join(offered)
      yield* pause()
      expect(sent(socket)).toEqual([1, 2, 3, 4, 5, 6, 7])
      expect(socket.closes).toEqual([])
    }))

  it.live("an offer waiting for room ends when the connection closes", () =>
    Effect.gen(function*() {
      const { connection, socket } = make({ outboxCapacity: 1 })
      socket.hold()
      connection.push(frame(1))
      yield* pause()
      connection.push(frame(2))
      const offered = yield* Effect.fork(connection.offer(frame(3)))
      yield* pause()
      expect(Option.isNone(yield* Fiber.poll(offered))).toBe(true)
      connection.close(CloseCode.GoingAway, "bye")
      yield* Fiber.join(offered).pipe(Effect.timeoutFail({ duration: "1 second", onTimeout: () => "still waiting" }))
      yield* connection.offer(frame(4))
      expect(sent(socket)).toEqual([1])
    }))

  it.live("closeWhenFlushed closes only once the last frame queued was written", () =>
    Effect.gen(function*() {
      const { connection, socket } = make()
      socket.hold()
      connection.push(frame(1))
      yield* pause()
      connection.push(frame(2))
      connection.closeWhenFlushed(CloseCode.GoingAway, "shutting down")
      yield* pause()
      expect(socket.closes).toEqual([])
      socket.release()
      // 1's write is reported, 2 goes out in the next batch, held no longer: then the close.
      yield* pause()
      expect(sent(socket)).toEqual([1, 2])
      expect(socket.closes).toEqual([{ code: CloseCode.GoingAway, reason: "shutting down", afterFrames: 2 }])
    }))

  it("closeWhenFlushed on an idle connection closes at once", () => {
    const { connection, socket } = make()
    connection.closeWhenFlushed(CloseCode.GoingAway, "shutting down")
    expect(socket.closes.map((c) => c.code)).toEqual([CloseCode.GoingAway])
  })
})

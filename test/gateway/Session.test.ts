/**
 * A session end to end without a network: frames in through the socket
 * events, frames out on a fake socket, the real hub and event log behind.
 */
import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect } from "effect"
import { makeTestConfig } from "../../src/config/AppConfig.ts"
import { CloseCode, ErrorCode, PROTOCOL_VERSION } from "../../src/protocol/Codes.ts"
import { eventually, pause } from "../utils/FakeSocket.ts"
import { LOSE_THE_DATABASE, makeSessionEnv, NEW_THREAD } from "../utils/SessionHarness.ts"

const T = "thread-1"
const zero = { connections: 0, threads: 0, subscriptions: 0, users: 0 }
const limits = (overrides: Partial<ReturnType<typeof makeTestConfig>["limits"]>) => ({
  limits: { ...makeTestConfig().limits, ...overrides }
})

describe("Session", () => {
  it.scopedLive("sends welcome first, with the protocol and the heartbeat, before answering anything", () =>
    Effect.gen(function*() {
      const env = yield* makeSessionEnv({ heartbeat: Duration.seconds(7) })
      const bob = env.open("bob")
      bob.send({ type: "ping", id: "p1" })
      bob.send({ type: "ping" })
      yield* eventually("two pongs", () => bob.socket.ofType("pong").length === 2)
      const [welcome, ...rest] = bob.socket.frames
      expect(welcome).toMatchObject({ type: "welcome", protocol: PROTOCOL_VERSION, user_id: "bob", heartbeat_ms: 7000 })
      expect(typeof welcome!.connection_id).toBe("string")
      expect(new Date(welcome!.server_time).toISOString()).toBe(welcome!.server_time)
      expect(rest).toEqual([{ type: "pong", ref: "p1" }, { type: "pong" }])
    }))

  it.scopedLive("a frame it cannot use is invalid_message naming the problem, with the ref when the id was usable", () =>
    Effect.gen(function*() {
      const env = yield* makeSessionEnv()
      const bob = env.open("bob")
      const cases: ReadonlyArray<readonly [string, string | undefined, string]> = [
        ["{not json", undefined, "not valid JSON"],
        [JSON.stringify({ type: "nope", id: "r1" }), "r1", "unknown type \"nope\""],
        [JSON.stringify({ type: "join_thread", id: "r2" }), "r2", "missing field \"thread_id\""],
        [JSON.stringify({ type: "join_thread", id: "r3", thread_id: 7 }), "r3", "invalid field \"thread_id\""],
        [JSON.stringify({ type: "join_thread", id: "r4", thread_id: "a\u0000b" }), "r4", "invalid field \"thread_id\""],
        [JSON.stringify({ type: "join_thread", id: 5, thread_id: T }), undefined, "invalid field \"id\""]
      ]
      for (const [raw] of cases) bob.send(raw)
      bob.events.message("", true)
      bob.send({ type: "ping", id: "still-there" })
      yield* eventually("the pong", () => bob.socket.ofType("pong").length === 1)
      const errors = bob.socket.ofType("error")
      expect(errors).toHaveLength(cases.length + 1)
      cases.forEach(([, ref, text], i) => {
        expect(errors[i]).toMatchObject({ code: ErrorCode.InvalidMessage })
        expect(errors[i]!.ref).toBe(ref)
        expect(errors[i]!.message).toContain(text)
      })
      expect(errors[4]!.message).toContain("NUL")
      expect(errors.at(-1)).toEqual({ type: "error", code: ErrorCode.InvalidMessage, message: expect.any(String) })
      expect(errors.at(-1)!.message).toContain("binary")
      expect(bob.socket.closes).toEqual([])
    }))

  it.scopedLive("answers frames one at a time, in the order they came", () =>
    Effect.gen(function*() {
      const env = yield* makeSessionEnv()
      env.thread(T, ["bob"])
      const bob = env.open("bob")
      yield* env.reads.close
      bob.send({ type: "join_thread", id: "j1", thread_id: T })
      bob.send({ type: "ping", id: "p1" })
      bob.send({ type: "ping", id: "p2" })
      yield* pause(20)
      expect(bob.socket.frames.map((f) => f.type)).toEqual(["welcome"])
      yield* env.reads.open
      yield* eventually("three answers", () => bob.socket.frames.length === 4)
      expect(bob.socket.frames.slice(1).map((f) => [f.type, f.ref])).toEqual([["ack", "j1"], ["pong", "p1"], [
        "pong",
        "p2"
      ]])
    }))

  it.scopedLive("past the burst frames are rate_limited; past the flood threshold the connection is closed 1008", () =>
    Effect.gen(function*() {
      const env = yield* makeSessionEnv(limits({ framesPerSecond: 1, frameBurst: 3, floodThreshold: 2 }))
      const bob = env.open("bob")
      for (let i = 1; i <= 5; i++) bob.send({ type: "ping", id: `p${i}` })
      // Answered and written before the flood: a close drops whatever its outbox still holds.
      yield* eventually("five answers", () => bob.socket.frames.length === 6)
      expect(bob.socket.closes).toEqual([])
      bob.send({ type: "ping", id: "p6" })
      yield* eventually("the close", () => bob.socket.closes.length > 0)
      expect(bob.socket.frames.slice(1).map((f) => [f.type, f.ref, f.code])).toEqual([
        ["pong", "p1", undefined],
        ["pong", "p2", undefined],
        ["pong", "p3", undefined],
        ["error", "p4", ErrorCode.RateLimited],
        ["error", "p5", ErrorCode.RateLimited]
      ])
      expect(bob.socket.closes.map((c) => c.code)).toEqual([CloseCode.PolicyViolation])
      yield* eventually("the session is released", () => env.hub.connectionsOf("bob") === 0)
    }))

  it.scopedLive("more frames waiting than inboxCapacity closes the connection 1008", () =>
    Effect.gen(function*() {
      const env = yield* makeSessionEnv({ inboxCapacity: 2 })
      env.thread(T, ["bob"])
      const bob = env.open("bob")
      // The join is stuck on a read; the pings wait behind it.
      yield* env.reads.close
      bob.send({ type: "join_thread", id: "j1", thread_id: T })
      yield* pause(5)
      bob.send({ type: "ping", id: "p1" })
      bob.send({ type: "ping", id: "p2" })
      expect(bob.socket.closes).toEqual([])
      bob.send({ type: "ping", id: "p3" })
      expect(bob.socket.closes).toEqual([
        { code: CloseCode.PolicyViolation, reason: "too many frames in flight", afterFrames: 1 }
      ])
      yield* env.reads.open
      yield* eventually("the session is released", () => env.hub.connectionsOf("bob") === 0)
    }))

  it.scopedLive("join_thread is acked with the head, then the events after after_seq, then live ones", () =>
    Effect.gen(function*() {
      const env = yield* makeSessionEnv()
      env.thread(T, ["bob"])
      yield* env.post(T, 3)
      const bob = env.open("bob")
      bob.send({ type: "join_thread", id: "j1", thread_id: T, after_seq: 1 })
      yield* eventually("the replay", () => bob.socket.seqs(T).length === 2)
      yield* env.post(T)
      yield* eventually("the live event", () => bob.socket.seqs(T).length === 3)
      const [, ack, ...events] = bob.socket.frames
      expect(ack).toEqual({ type: "ack", ref: "j1", thread_id: T, head_seq: 3, online: ["bob"] })
      expect(events.map((f) => f.seq)).toEqual([2, 3, 4])
      bob.send({ type: "join_thread", id: "j2", thread_id: "not-mine" })
      yield* eventually("the refusal", () => bob.socket.ofType("error").length === 1)
      expect(bob.socket.ofType("error")[0]).toMatchObject({ ref: "j2", code: ErrorCode.NotFound })
    }))

  it.scopedLive("a reply after a replay that filled the outbox is sent, not a 1013 to a client that reads", () =>
    Effect.gen(function*() {
      const env = yield* makeSessionEnv({ outboxCapacity: 8 })
      env.thread(T, ["bob"])
      yield* env.post(T, 15)
      const bob = env.open("bob")
      bob.send({ type: "join_thread", id: "j1", thread_id: T, after_seq: 0 })
      bob.send({ type: "ping", id: "p1" })
      yield* eventually("the pong", () => bob.socket.ofType("pong").length === 1)
      expect(bob.socket.seqs(T)).toEqual(Array.from({ length: 15 }, (_, i) => i + 1))
      expect(bob.socket.closes).toEqual([])
    }))

  it.scopedLive("send_message is acked before any event of its run", () =>
    Effect.gen(function*() {
      const env = yield* makeSessionEnv()
      env.thread(T, ["bob"])
      const bob = env.open("bob")
      bob.send({ type: "send_message", id: "s1", thread_id: T, content: "hello" })
      yield* eventually(
        "the run's end",
        () => bob.socket.ofType("event").some((f) => f.event_type === "agent_completed")
      )
      const [, ack, ...events] = bob.socket.frames
      expect(ack).toMatchObject({ type: "ack", ref: "s1", message_id: expect.any(String), run_id: expect.any(String) })
      expect(events.map((f) => f.event_type)).toEqual([
        "message_created",
        "agent_started",
        "agent_response_delta",
        "agent_completed"
      ])
      expect(events[0]!.data.message_id).toBe(ack!.message_id)
      expect(events.slice(1).every((f) => f.run_id === ack!.run_id)).toBe(true)
    }))

  it.scopedLive("a request the database fails is answered unavailable, and the monitor is nudged", () =>
    Effect.gen(function*() {
      const env = yield* makeSessionEnv()
      const bob = env.open("bob")
      bob.send({ type: "create_thread", id: "c1", title: LOSE_THE_DATABASE })
      bob.send({ type: "create_thread", id: "c2", title: "fine" })
      yield* eventually("two answers", () => bob.socket.frames.length === 3)
      expect(bob.socket.frames[1]).toMatchObject({ type: "error", ref: "c1", code: ErrorCode.Unavailable })
      expect(bob.socket.frames[2]).toEqual({ type: "ack", ref: "c2", thread_id: NEW_THREAD })
      expect(env.nudges.count).toBe(1)
    }))

  it.scopedLive("closed releases the connection, its joins and a request still in flight", () =>
    Effect.gen(function*() {
      const env = yield* makeSessionEnv()
      env.thread(T, ["bob"])
      env.thread("thread-2", ["bob"])
      const bob = env.open("bob")
      bob.send({ type: "join_thread", id: "j1", thread_id: T })
      yield* eventually("the ack", () => bob.socket.ofType("ack").length === 1)
      yield* env.reads.close
      bob.send({ type: "join_thread", id: "j2", thread_id: "thread-2" })
      yield* pause(5)
      expect(yield* env.hub.stats).toEqual({ connections: 1, threads: 2, subscriptions: 2, users: 1 })
      bob.events.closed(CloseCode.Normal)
      yield* eventually("nothing left", () => env.hub.connectionsOf("bob") === 0)
      expect(env.readsPassed.count).toBe(1)
      yield* env.reads.open
      yield* pause(10)
      expect(yield* env.hub.stats).toEqual(zero)
      // The join waiting on its read was interrupted, not left to run on for a connection that is gone.
      expect(env.readsPassed.count).toBe(1)
      expect(bob.socket.ofType("ack")).toHaveLength(1)
    }))
})

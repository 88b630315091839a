/** The SDK's decoding of server frames with the protocol's Schemas, and its reading of a token's expiry. */
import { describe, expect, it } from "vitest"
import { decodeServerFrame } from "../../src/client/Decode.ts"
import type { ThreadEvent } from "../../src/client/index.ts"
import { expiryOf, refreshDelay } from "../../src/client/Token.ts"

const event = (event_type: string, data: unknown, seq = 1) =>
  JSON.stringify({
    type: "event",
    event_type,
    event_id: `e-${seq}`,
    thread_id: "t-1",
    run_id: "r-1",
    seq,
    timestamp: "2026-01-01T00:00:00.000Z",
    data
  })

describe("decodeServerFrame", () => {
  it("decodes an event with its data typed by its event_type, unknown fields dropped", () => {
    const decoded = decodeServerFrame(event("agent_completed", { response: "4", duration_ms: 3, extra: true }))
    expect(decoded.kind).toBe("frame")
    if (decoded.kind !== "frame" || decoded.frame.type !== "event") throw new Error("not an event")
    const frame: ThreadEvent = decoded.frame
    if (frame.event_type !== "agent_completed") throw new Error("not agent_completed")
    // `data` is typed: `response` is a string, no cast.
    const response: string = frame.data.response
    expect(response).toBe("4")
    expect(frame.data).toEqual({ response: "4", duration_ms: 3 })
  })

  it("decodes acks with online, presence frames and errors", () => {
    expect(decodeServerFrame(`{"type":"ack","ref":"1","thread_id":"t","head_seq":0,"online":["a"]}`)).toEqual({
      kind: "frame",
      frame: { type: "ack", ref: "1", thread_id: "t", head_seq: 0, online: ["a"] }
    })
    expect(decodeServerFrame(`{"type":"presence","thread_id":"t","online":["a","b"]}`)).toEqual({
      kind: "frame",
      frame: { type: "presence", thread_id: "t", online: ["a", "b"] }
    })
    expect(decodeServerFrame(`{"type":"error","ref":"2","code":"busy","message":"m"}`)).toMatchObject({
      kind: "frame",
      frame: { type: "error", code: "busy" }
    })
  })

  it("keeps what a later addition may send: an unknown event counts for seq, unknown codes pass", () => {
    expect(decodeServerFrame(event("agent_dreaming", { dream: 1 }, 7))).toEqual({
      kind: "unknown_event",
      thread_id: "t-1",
      seq: 7
    })
    const ended = decodeServerFrame(event("agent_error", { code: "quota_exceeded", message: "no more" }))
    expect(ended).toMatchObject({ kind: "frame", frame: { event_type: "agent_error", data: { code: "internal" } } })
    expect(decodeServerFrame(`{"type":"error","ref":"3","code":"too_late","message":"m"}`)).toEqual({
      kind: "error",
      ref: "3",
      code: "too_late",
      message: "m"
    })
    expect(decodeServerFrame(`{"type":"gossip"}`).kind).toBe("ignored")
    expect(decodeServerFrame(`not json`).kind).toBe("ignored")
    // A known event whose data is off the contract is not delivered as typed.
    expect(decodeServerFrame(event("agent_completed", { response: 4 })).kind).toBe("unknown_event")
  })
})

describe("tokens", () => {
  const jwt = (claims: object) =>
    `${btoa(JSON.stringify({ alg: "HS256" }))}.${Buffer.from(JSON.stringify(claims)).toString("base64url")}.sig`

  it("reads exp, and nothing from a token that is not a JWT", () => {
    expect(expiryOf(jwt({ sub: "a", exp: 1_800_000_000 }))).toBe(1_800_000_000_000)
    expect(expiryOf(jwt({ sub: "a" }))).toBeUndefined()
    expect(expiryOf("opaque")).toBeUndefined()
    expect(expiryOf("a.!!!.b")).toBeUndefined()
  })

  it("refreshes ahead of expiry, half-way for a short token, never at once", () => {
    expect(refreshDelay(3_600_000, 30_000)).toBe(3_570_000)
    expect(refreshDelay(10_000, 30_000)).toBe(5_000)
    expect(refreshDelay(0, 30_000)).toBe(250)
  })
})

import { describe, expect, it } from "@effect/vitest"
import { Either } from "effect"
import { decodeFrame } from "../../src/protocol/ClientFrames.ts"

const NUL = "\u0000"
const decode = (frame: Record<string, unknown>) => decodeFrame(JSON.stringify(frame))

describe("decodeFrame and U+0000", () => {
  it("refuses a NUL in every string field, naming the field and keeping the ref", () => {
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ type: "send_message", id: "r", thread_id: "t", content: `a${NUL}` }, "content"],
      [{ type: "send_message", id: "r", thread_id: `t${NUL}`, content: "a" }, "thread_id"],
      [{ type: "create_thread", id: "r", title: NUL }, "title"],
      [{ type: "create_thread", id: "r", members: ["bob", "carol", `${NUL}dave`] }, "members.2"],
      [{ type: "join_thread", id: "r", thread_id: NUL }, "thread_id"],
      [{ type: "leave_thread", id: "r", thread_id: `t${NUL}t` }, "thread_id"],
      [{ type: "cancel_run", id: "r", run_id: `run${NUL}` }, "run_id"],
      [{ type: "refresh_token", id: "r", token: `a.b.c${NUL}` }, "token"]
    ]
    for (const [frame, field] of cases) {
      expect(decode(frame), JSON.stringify(frame)).toEqual(Either.left({
        ref: "r",
        message: `invalid field "${field}": must not contain U+0000 (NUL)`
      }))
    }
  })

  it("refuses a request id with a NUL, and does not echo it as the ref", () => {
    for (const type of ["ping", "create_thread"]) {
      expect(decode({ type, id: `r${NUL}` })).toEqual(Either.left({
        ref: undefined,
        message: "invalid field \"id\": must not contain U+0000 (NUL)"
      }))
    }
  })

  it("still reports a field's other problems as before", () => {
    const empty = decode({ type: "send_message", id: "r", thread_id: "t", content: "" })
    expect(Either.isLeft(empty) && empty.left.message).toMatch(
      /^invalid field "content": Expected a string at least 1 character/
    )
  })

  it("accepts the other control characters and lone surrogates, which PostgreSQL stores", () => {
    const controls = Array.from({ length: 31 }, (_, i) => String.fromCharCode(i + 1)).join("") + "\u007f\u0085"
    for (const content of [controls, "a\ud800b", "\udc00", "😀"]) {
      expect(Either.isRight(decode({ type: "send_message", id: "r", thread_id: "t", content })), content).toBe(true)
    }
  })

  it("refuses a raw NUL byte as invalid JSON, before any schema", () => {
    expect(decodeFrame(`{"type":"ping","id":"a${NUL}"}`)).toEqual(
      Either.left({ ref: undefined, message: "frame is not valid JSON" })
    )
  })
})

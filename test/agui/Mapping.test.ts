import { EventType } from "@ag-ui/core"
import { describe, expect, it } from "@effect/vitest"
import { eventId, initialState, isAfter, parsePosition, step } from "../../src/agui/Mapping.ts"
import type { StoredEvent } from "../../src/protocol/Events.ts"

const stored = (seq: number, event_type: StoredEvent["event_type"], data: unknown, run_id: string | null = "r") => ({
  event_id: `e${seq}`,
  thread_id: "t",
  run_id,
  seq,
  timestamp: "2026-01-01T00:00:00.000Z",
  event_type,
  data
})

describe("AG-UI mapping", () => {
  it("names each event by its stored seq, and its group index before the last", () => {
    expect([0, 1, 2].map((i) => eventId(7, i, 3))).toEqual(["7.0", "7.1", "7"])
    expect(parsePosition("7")).toEqual({ seq: 7, index: null })
    expect(parsePosition("7.1")).toEqual({ seq: 7, index: 1 })
    for (const bad of ["", "x", "7.", "-1", "1.2.3", "1e3"]) expect(parsePosition(bad), bad).toBeUndefined()
    const after71 = parsePosition("7.1")
    expect([isAfter(after71, 7, 1), isAfter(after71, 7, 2), isAfter(after71, 8, 0), isAfter(after71, 6, 9)])
      .toEqual([false, true, true, false])
    expect(isAfter(parsePosition("7"), 7, 2)).toBe(false)
    expect(isAfter(undefined, 1, 0)).toBe(true)
  })

  it("keeps a text message open across deltas and closes it before whatever comes next", () => {
    const first = step("t", "r", initialState, stored(3, "agent_response_delta", { delta: "a" }))
    expect(first.events.map((e) => e.type)).toEqual([EventType.TEXT_MESSAGE_START, EventType.TEXT_MESSAGE_CONTENT])
    const second = step("t", "r", first.state, stored(4, "agent_response_delta", { delta: "b" }))
    expect(second.events.map((e) => e.type)).toEqual([EventType.TEXT_MESSAGE_CONTENT])
    const end = step("t", "r", second.state, stored(5, "agent_error", { code: "cancelled", message: "stop" }))
    expect(end.terminal).toBe(true)
    expect(end.events).toMatchObject([
      { type: EventType.TEXT_MESSAGE_END, messageId: "r:text:3" },
      { type: EventType.RUN_FINISHED, threadId: "t", runId: "r", outcome: { type: "cancelled" } }
    ])
    // Events of no run, or of another run, give nothing and change nothing.
    const other = step("t", "r", second.state, stored(6, "message_created", {}, null))
    expect(other).toEqual({ events: [], state: second.state, terminal: false })
  })
})

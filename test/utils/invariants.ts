/** The ordering rules of PROTOCOL.md section 3, checked over received events. */
import { expect } from "@effect/vitest"
import type { EventFrame } from "../../src/client/ChatClient.ts"

/** Seqs strictly increase by exactly one from `firstSeq`. */
export const expectContiguous = (events: ReadonlyArray<EventFrame>, firstSeq = 1) => {
  expect(events.map((e) => e.seq)).toEqual(events.map((_, i) => firstSeq + i))
}

/** One run's events: started first, tool calls paired in order, exactly one terminal event, last. */
export const expectRunShape = (events: ReadonlyArray<EventFrame>, runId: string) => {
  const run = events.filter((e) => e.run_id === runId)
  expect(run.length).toBeGreaterThanOrEqual(2)
  expect(run[0]!.event_type).toBe("agent_started")
  const terminal = run.filter((e) => e.event_type === "agent_completed" || e.event_type === "agent_error")
  expect(terminal).toHaveLength(1)
  expect(run.at(-1)).toBe(terminal[0])
  const open = new Map<string, string>()
  for (const event of run) {
    if (event.event_type === "tool_executing") {
      expect(open.has(event.data.tool_call_id)).toBe(false)
      open.set(event.data.tool_call_id, event.data.tool)
    } else if (event.event_type === "tool_completed") {
      expect(open.get(event.data.tool_call_id)).toBe(event.data.tool)
      open.delete(event.data.tool_call_id)
      expect(typeof event.data.duration_ms).toBe("number")
      expect("output" in event.data || "error" in event.data).toBe(true)
    }
  }
  expect(open.size).toBe(0)
  return run
}

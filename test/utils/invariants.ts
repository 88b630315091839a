/** The rules of docs/PROTOCOL.md section 3 as assertions, judged by the one checker in RunInvariants.ts. */
import { expect } from "@effect/vitest"
import type { EventFrame } from "./ChatClient.ts"
import { type CheckOptions, eventsOfRun, runViolations } from "./RunInvariants.ts"

/** Seqs strictly increase by exactly one from `firstSeq`. */
export const expectContiguous = (events: ReadonlyArray<EventFrame>, firstSeq = 1) => {
  expect(events.map((e) => e.seq)).toEqual(events.map((_, i) => firstSeq + i))
}

/** Every run in the events keeps every rule; by default the events are a whole log at rest. */
export const expectValidRuns = (events: ReadonlyArray<EventFrame>, options: CheckOptions = { ended: true }) => {
  expect(runViolations(events, options)).toEqual([])
}

/** One run's events: started first, tool calls paired, exactly one terminal event, last. */
export const expectRunShape = (events: ReadonlyArray<EventFrame>, runId: string) => {
  const run = eventsOfRun(events, runId)
  expect(run.length).toBeGreaterThanOrEqual(2)
  expect(runViolations(run, { ended: true, seqs: false })).toEqual([])
  expect(run[0]!.event_type).toBe("agent_started")
  return run
}

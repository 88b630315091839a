/**
 * Scenarios of the run-lifecycle property: plain data, so that a failing
 * case shrinks to a script a person can read and replay. A scenario is a
 * list of actions on two server processes sharing one store: messages that
 * start runs (each with the model's scripted turns), cancels, waits, the
 * database lost and back, one process cut off from it, and commits that
 * fail before or after applying.
 * Also here: what a script does when nothing interferes, which the oracle
 * compares every stored run against.
 */
import { FastCheck as fc } from "effect"

/**
 * Small durations (ms), so that a case spans a few leases (the simulation makes them cost nothing), and
 * in proportions that make every path common: a run of three slow calls outlives its lease and a sweep
 * after it, so renewals matter; five outlive the run timeout; the tool timeout cuts a hang before.
 */
export const TIMING = {
  toolTimeout: 100,
  runLease: 100,
  runTimeout: 300,
  maxAgentSteps: 3,
  reconnectBase: 20,
  reconnectMax: 80,
  /** How long an operation takes to fail while its process cannot reach the database. */
  lostAnswer: 10
} as const

/** answer: at once; fail: a ToolError; hang: never answers (past the tool timeout); slow: answers after `ms`. */
export type ToolKind = "answer" | "fail" | "hang" | "slow"

export type Chunk =
  | { readonly think: string }
  | { readonly say: string }
  | { readonly call: ToolKind; readonly id: string; readonly ms?: number }

/** The model's turns in order; after the last it answers with nothing. */
export type Script = ReadonlyArray<ReadonlyArray<Chunk>>

/** Which server process: the two share the store, each with its own event log, owner id and leases. */
export type Via = 1 | 2

export type Action =
  | { readonly send: Script; readonly thread: number; readonly via: Via }
  /** `cancel_run` of the thread's latest run, through one of the processes. */
  | { readonly cancel: number; readonly via: Via }
  | { readonly wait: number }
  /** The database lost (true) or back (false). */
  | { readonly down: boolean }
  /** One process loses its connection to the database, the other keeps it (0: both connected). */
  | { readonly cut: 0 | Via }
  /** The next commit fails: before it applied, or after (its answer lost). */
  | { readonly failCommit: "before" | "after" }

export interface Scenario {
  /** Seeds the schedules' jitter. */
  readonly seed: number
  /** How long after the first process the second starts (ms): their renewals and sweeps out of phase. */
  readonly stagger: number
  readonly actions: ReadonlyArray<Action>
}

export const THREADS = ["t0", "t1"] as const

export const SLOW_OUTPUT = { slow: "done" } as const
export const ANSWER_OUTPUT = { answer: 42 } as const
export const TOOL_FAILURE = "the tool failed"

/** A call before ids are given: `again` reuses the script's previous id (false is what shrinking aims for). */
type RawChunk = Chunk | { readonly call: ToolKind; readonly again: boolean; readonly ms?: number }

const rawChunk: fc.Arbitrary<RawChunk> = fc.oneof(
  { weight: 2, arbitrary: fc.constantFrom("a", "b", "c").map((say): RawChunk => ({ say })) },
  { weight: 1, arbitrary: fc.constant<RawChunk>({ think: "hmm" }) },
  {
    weight: 3,
    arbitrary: fc.record({
      call: fc.constantFrom<ToolKind>("answer", "fail", "slow", "hang"),
      again: fc.oneof({ weight: 9, arbitrary: fc.constant(false) }, { weight: 1, arbitrary: fc.constant(true) }),
      ms: fc.integer({ min: TIMING.toolTimeout / 2, max: TIMING.toolTimeout - 10 })
    }).map(({ again, call, ms }): RawChunk => call === "slow" ? { call, again, ms } : { call, again })
  }
)

/** Fresh ids c1, c2… in order, unless a call asks to repeat the previous one. */
const withIds = (turns: ReadonlyArray<ReadonlyArray<RawChunk>>): Script => {
  let n = 0
  let last: string | undefined
  return turns.map((turn) =>
    turn.map((chunk): Chunk => {
      if (!("again" in chunk)) return chunk
      const id = chunk.again && last !== undefined ? last : `c${++n}`
      last = id
      return chunk.ms === undefined ? { call: chunk.call, id } : { call: chunk.call, id, ms: chunk.ms }
    })
  )
}

export const script: fc.Arbitrary<Script> = fc
  .array(fc.array(rawChunk, { maxLength: 4 }), { minLength: 1, maxLength: TIMING.maxAgentSteps })
  .map(withIds)

const via = fc.constantFrom<Via>(1, 2)

const action: fc.Arbitrary<Action> = fc.oneof(
  { weight: 3, arbitrary: fc.record({ send: script, thread: fc.integer({ min: 0, max: 1 }), via }) },
  { weight: 1, arbitrary: fc.record({ cancel: fc.integer({ min: 0, max: 1 }), via }) },
  { weight: 3, arbitrary: fc.record({ wait: fc.integer({ min: 1, max: 3 * TIMING.runLease }) }) },
  { weight: 1, arbitrary: fc.record({ down: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ cut: fc.constantFrom<0 | Via>(0, 0, 1, 2) }) },
  { weight: 1, arbitrary: fc.record({ failCommit: fc.constantFrom<"before" | "after">("before", "after") }) }
)

export const scenario: fc.Arbitrary<Scenario> = fc.record({
  seed: fc.integer(),
  stagger: fc.integer({ min: 0, max: TIMING.runLease - 1 }),
  actions: fc.array(action, { minLength: 1, maxLength: 24, size: "max" })
})

/** How a run ends when nothing interferes. */
export type NaturalEnd =
  | { readonly kind: "completed"; readonly response: string }
  | { readonly kind: "tool_call_reused" }
  | { readonly kind: "tool_timeout" }
  | { readonly kind: "too_many_steps" }

/**
 * What a script stores when nothing interferes, as signatures of its events between `agent_started`
 * and the terminal (see `signature`), and how it ends. Mirrors the run loop: a turn's thinking and
 * deltas as they stream, then its calls one by one.
 */
export const natural = (s: Script): { readonly events: ReadonlyArray<string>; readonly end: NaturalEnd } => {
  const events: Array<string> = []
  const used = new Set<string>()
  let response = ""
  for (let step = 0; step < TIMING.maxAgentSteps; step++) {
    const turn = s[step] ?? []
    const calls: Array<Extract<Chunk, { call: ToolKind }>> = []
    for (const chunk of turn) {
      if ("think" in chunk) events.push(`thinking ${chunk.think}`)
      else if ("say" in chunk) {
        events.push(`delta ${chunk.say}`)
        response += chunk.say
      } else calls.push(chunk)
    }
    if (calls.length === 0) return { events, end: { kind: "completed", response } }
    for (const c of calls) {
      if (used.has(c.id)) return { events, end: { kind: "tool_call_reused" } }
      used.add(c.id)
      events.push(`executing ${c.id} ${c.call}`)
      if (c.call === "hang") {
        events.push(`completed ${c.id} ${c.call} timed out`)
        return { events, end: { kind: "tool_timeout" } }
      }
      events.push(`completed ${c.id} ${c.call} ${c.call === "fail" ? TOOL_FAILURE : "ok"}`)
    }
  }
  return { events, end: { kind: "too_many_steps" } }
}

/** A stored event as `natural` names it. */
export const signature = (event: { readonly event_type: string; readonly data: Record<string, any> }): string => {
  const d = event.data
  switch (event.event_type) {
    case "agent_thinking":
      return `thinking ${d.text}`
    case "agent_response_delta":
      return `delta ${d.delta}`
    case "tool_executing":
      return `executing ${d.tool_call_id} ${d.tool}`
    case "tool_completed": {
      const error = typeof d.error === "string" && d.error.startsWith("timed out") ? "timed out" : d.error
      return `completed ${d.tool_call_id} ${d.tool} ${"output" in d ? "ok" : error}`
    }
    default:
      return event.event_type
  }
}

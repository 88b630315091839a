/**
 * The one checker of docs/PROTOCOL.md section 3, over a thread's events as
 * stored or as a client received them: seqs grow by exactly one; every
 * user message is followed by a run; each run starts with `agent_started`,
 * pairs every `tool_executing` with exactly one later `tool_completed` of
 * the same id and tool, never reuses a tool call id, and has at most one
 * terminal event, its last (exactly one once the run is over); the runs of
 * a thread never interleave (one run in progress at a time). It returns
 * what is wrong, in words, so the e2e suites, the stress suite and the
 * property test all judge a log the same way. No test framework here.
 */

export interface CheckedEvent {
  readonly event_type: string
  readonly run_id: string | null
  readonly seq: number
  readonly data: Readonly<Record<string, any>>
}

export interface CheckOptions {
  /** Every run must have ended (a stored log at rest); otherwise a run may still be going. */
  readonly ended?: boolean
  /** The first seq expected (1 for a whole log; more for a client that joined late). */
  readonly firstSeq?: number
  /** The events start mid-thread (a late join): runs already going when they start are checked from there. */
  readonly partial?: boolean
  /** Check that seqs grow by one (default); off for a selection of a thread's events, such as one run's. */
  readonly seqs?: boolean
}

const TERMINAL = new Set(["agent_completed", "agent_error"])
const RUN_EVENTS = new Set([
  "agent_started",
  "agent_thinking",
  "tool_executing",
  "tool_completed",
  "agent_response_delta",
  "agent_completed",
  "agent_error"
])

interface RunState {
  started: boolean
  /** Seen from its agent_started (always, unless the events are partial). */
  readonly whole: boolean
  ended: boolean
  readonly open: Map<string, string>
  readonly used: Set<string>
}

/** Everything wrong with a thread's events; empty when they keep every rule. */
export const runViolations = (events: ReadonlyArray<CheckedEvent>, options: CheckOptions = {}): Array<string> => {
  const problems: Array<string> = []
  const first = options.firstSeq ?? events[0]?.seq ?? 1
  if (options.seqs !== false) {
    events.forEach((event, i) => {
      if (event.seq !== first + i) problems.push(`seq ${event.seq} at position ${i}, expected ${first + i}`)
    })
  }
  const runs = new Map<string, RunState>()
  const messages = new Set<string>()
  // Only a stream with every event between two runs can tell they overlapped; a selection cannot.
  const ordered = options.seqs !== false
  let going: string | undefined
  for (const event of events) {
    const at = `seq ${event.seq} (${event.event_type})`
    if (event.event_type === "message_created") {
      if (event.run_id !== null) problems.push(`${at}: a message belongs to no run`)
      messages.add(String(event.data.message_id))
      continue
    }
    if (!RUN_EVENTS.has(event.event_type)) continue
    if (event.run_id === null) {
      problems.push(`${at}: a run event without run_id`)
      continue
    }
    let run = runs.get(event.run_id)
    if (run === undefined) {
      const seenFromStart = options.partial !== true || event.event_type === "agent_started"
      runs.set(
        event.run_id,
        run = { started: false, ended: false, whole: seenFromStart, open: new Map(), used: new Set() }
      )
    }
    const where = `run ${event.run_id} ${at}`
    if (run.ended) problems.push(`${where}: after the run's terminal event`)
    else if (ordered) {
      if (going !== undefined && going !== event.run_id) problems.push(`${where}: while run ${going} is in progress`)
      going = TERMINAL.has(event.event_type) ? undefined : event.run_id
    }
    if (event.event_type === "agent_started") {
      if (run.started) problems.push(`${where}: a second agent_started`)
      run.started = true
      messages.delete(String(event.data.message_id))
      continue
    }
    if (!run.started && run.whole) problems.push(`${where}: before agent_started`)
    if (event.event_type === "tool_executing") {
      const id = String(event.data.tool_call_id)
      if (run.used.has(id)) problems.push(`${where}: tool call id ${id} used again`)
      run.used.add(id)
      run.open.set(id, String(event.data.tool))
    } else if (event.event_type === "tool_completed") {
      const id = String(event.data.tool_call_id)
      const tool = run.open.get(id)
      if (tool === undefined && run.whole) {
        problems.push(`${where}: tool_completed of ${id} without its open tool_executing`)
      } else if (tool !== undefined && tool !== event.data.tool) {
        problems.push(`${where}: tool_completed of ${id} names ${event.data.tool}`)
      }
      if (!("output" in event.data) && !("error" in event.data)) problems.push(`${where}: neither output nor error`)
      if (typeof event.data.duration_ms !== "number") problems.push(`${where}: no duration_ms`)
      run.open.delete(id)
    } else if (TERMINAL.has(event.event_type)) {
      for (const id of run.open.keys()) problems.push(`${where}: ends with tool call ${id} still open`)
      run.ended = true
    }
  }
  // A message is followed by its run in the same transaction: a client that saw one sees the other.
  if (options.partial !== true) { for (const id of messages) problems.push(`message ${id} is not followed by a run`) }
  if (options.ended === true) {
    for (const [id, run] of runs) if (!run.ended) problems.push(`run ${id} has no terminal event`)
  }
  return problems
}

/** The events of one run, in order. */
export const eventsOfRun = <E extends CheckedEvent>(events: ReadonlyArray<E>, runId: string): Array<E> =>
  events.filter((e) => e.run_id === runId)

/**
 * The judge of one played scenario: everything wrong with what was stored
 * and answered, in words (empty when the lifecycle held). Each run's stored
 * events are compared with what its script does when nothing interferes
 * (`natural`), and every departure from it must have a cause the scenario
 * supplied: a cancel, the database lost, a failing commit, a lease that
 * lapsed after more failed renewals than it promises to survive, a start
 * whose commit answer was lost (so that no process ever held the run).
 */
import { type Event, type Interval, type Observation, scriptKey } from "./LifecycleDriver.ts"
import { natural, type Scenario, type Script, signature, TIMING, type Via } from "./LifecycleScenario.ts"
import { INTERRUPTED, ORPHANED } from "./LifecycleWorld.ts"
import { runViolations } from "./RunInvariants.ts"

const REFUSED = "event refused by the run lifecycle"
const ENDED = "run ended"
const SWEPT = "ended a run whose process stopped (its lease expired)"
/** How many renewals in a row may fail without the lease lapsing, as Leases' fixed quarter-lease rate promises. */
const RENEWALS_MAY_FAIL = 2

interface RunFacts {
  readonly runId: string
  readonly name: string
  /** The process that started it. */
  readonly via: Via
  readonly script: Script
  /** Its send was answered ok (so a loop ran it). */
  readonly acked: boolean
  readonly start: number
  readonly end: number
  readonly events: ReadonlyArray<Event>
  readonly terminal: Event | undefined
}

const time = (event: Event) => Date.parse(event.timestamp)

const runsOf = (scenario: Scenario, observation: Observation, problems: Array<string>): Array<RunFacts> => {
  const facts: Array<RunFacts> = []
  for (const [thread, events] of observation.events) {
    const contents = new Map(
      events.filter((e) => e.event_type === "message_created").map((e) => [e.data.message_id, e.data.content])
    )
    for (const started of events.filter((e) => e.event_type === "agent_started")) {
      const runId = started.run_id!
      const index = scenario.actions.findIndex((_, i) => scriptKey(i) === contents.get(started.data.message_id))
      const action = scenario.actions[index]
      if (action === undefined || !("send" in action)) {
        problems.push(`run ${runId} of ${thread} was started by no send`)
        continue
      }
      const own = events.filter((e) => e.run_id === runId)
      const last = own.at(-1)!
      const terminal = last.event_type === "agent_completed" || last.event_type === "agent_error" ? last : undefined
      facts.push({
        runId,
        name: `the run of action ${index} (${thread}, process ${action.via})`,
        via: action.via,
        script: action.send,
        acked: observation.sends.some((s) => s.runId === runId),
        start: time(started),
        end: time(last),
        events: own,
        terminal
      })
    }
  }
  return facts
}

/** The spans during which the run's process could not reach the database, back-to-back ones joined. */
const offline = (outages: Observation["outages"], run: RunFacts): Array<Interval> => {
  const spans = outages.filter((o) => o.process === undefined || o.process === run.via).sort((a, b) => a.from - b.from)
  const joined: Array<Interval> = []
  for (const { from, to } of spans) {
    const last = joined.at(-1)
    if (last !== undefined && from <= (last.to ?? Infinity)) last.to = Math.max(last.to ?? Infinity, to ?? Infinity)
    else joined.push({ from, to })
  }
  return joined
}

/** Whether one of the spans overlapped the run. */
const overlaps = (spans: ReadonlyArray<Interval>, run: RunFacts) =>
  spans.some((s) => s.from <= run.end && (s.to ?? Infinity) >= run.start)

/** How many of its process's lease renewals had failed in a row when the run ended (since it started). */
const failedRenewals = (observation: Observation, run: RunFacts) => {
  let failed = 0
  for (const renewal of observation.renewals[run.via - 1]!) {
    if (renewal.at >= run.start && renewal.at < run.end) failed = renewal.ok ? 0 : failed + 1
  }
  return failed
}

/** The terminal's status as the supervisor names it. */
const statusOf = (terminal: Event) =>
  terminal.event_type === "agent_completed" ? "completed" : terminal.data.code === "cancelled" ? "cancelled" : "failed"

/** Whether the end is one another party stores: a cancel through a process that does not run it, or a sweep. */
const endedElsewhere = (terminal: Event) =>
  terminal.data.code === "cancelled" || (terminal.data.code === "internal" && terminal.data.message === ORPHANED)

/** What is wrong with how this run ended, given what the scenario did to it; undefined when nothing. */
const judgeEnd = (run: RunFacts, observation: Observation, stored: ReadonlyArray<string>): string | undefined => {
  const terminal = run.terminal!
  const nat = natural(run.script)
  const whole = stored.length === nat.events.length
  const cancelled = observation.cancels.some((c) => c.runId === run.runId)
  const { code, message } = terminal.data
  if (terminal.event_type === "agent_completed") {
    if (nat.end.kind !== "completed") return `completed, but its script ends ${nat.end.kind}`
    if (!whole) return "completed, without all of its script's events stored"
    if (terminal.data.response !== nat.end.response) return `completed with response "${terminal.data.response}"`
    return undefined
  }
  switch (code) {
    case "cancelled":
      return cancelled ? undefined : "cancelled, but nobody cancelled it"
    case "unavailable":
      return overlaps(offline(observation.outages, run), run) || overlaps(observation.commitFaults, run)
        ? undefined
        : "unavailable, but the database answered throughout"
    case "timeout":
      if (message === "the run took too long") {
        return run.end - run.start >= TIMING.runTimeout ? undefined : "timed out before the run timeout"
      }
      return nat.end.kind === "tool_timeout" && whole && String(message).startsWith("the tool \"hang\"")
        ? undefined
        : `timed out (${message}) though its tools answer`
    case "internal":
      if (message === ORPHANED) {
        // A run its process never held (its start's commit answer was lost) has no renewals.
        const failed = failedRenewals(observation, run)
        return failed > RENEWALS_MAY_FAIL || !run.acked
          ? undefined
          : `ended as orphaned while its process held it, after ${failed} failed renewals in a row`
      }
      if (message === "tool_executing refused: tool call reused") {
        return nat.end.kind === "tool_call_reused" && whole ? undefined : "refused a tool call id used once"
      }
      if (/did not answer within \d+ steps/.test(String(message))) {
        return nat.end.kind === "too_many_steps" && whole ? undefined : "stopped for too many steps"
      }
      return `internal: ${message}`
    default:
      return `${code}: ${message}`
  }
}

/** Every way the played scenario broke the run lifecycle; empty when it held. */
export const lifecycleViolations = (scenario: Scenario, observation: Observation): Array<string> => {
  const problems: Array<string> = []
  const [first, second] = observation.activeRuns
  if (first + second > 0) problems.push(`active runs at rest: ${first} in process 1, ${second} in process 2`)
  for (const c of observation.cancels) {
    if (c.answer === undefined) problems.push(`the cancel of action ${c.index} was never answered`)
  }
  for (const run of observation.runs) {
    if (run.status === "running") problems.push(`run ${run.runId} of ${run.threadId} is still running at rest`)
  }
  for (const [thread, events] of observation.events) {
    for (const p of runViolations(events, { ended: true })) problems.push(`${thread}: ${p}`)
  }
  for (const send of observation.sends) {
    if (send.runId !== undefined && !observation.runs.some((r) => r.runId === send.runId)) {
      problems.push(`the send of action ${send.index} was acknowledged, but its run was not stored`)
    }
  }

  const runs = runsOf(scenario, observation, problems)
  const logsOf = (runId: string, message: string) =>
    observation.logs.filter((l) => l.message === message && l.annotations.run_id === runId)

  for (const refusal of observation.logs.filter((l) => l.message === REFUSED)) {
    if (!runs.some((r) => r.runId === refusal.annotations.run_id)) {
      problems.push(`an event of no stored run was refused (${refusal.annotations.reason})`)
    }
  }

  for (const run of runs) {
    const terminal = run.terminal
    if (terminal === undefined) continue // runViolations has said so
    // Between agent_started and the terminal: a prefix of what the script does, then the calls endRun closed.
    const body = run.events.slice(1, -1)
    while (body.at(-1)?.event_type === "tool_completed" && body.at(-1)!.data.error === INTERRUPTED) body.pop()
    const stored = body.map(signature)
    const expected = natural(run.script).events
    if (stored.some((s, i) => s !== expected[i])) {
      problems.push(`${run.name} stored [${stored.join(", ")}], not a prefix of [${expected.join(", ")}]`)
    }
    const wrongEnd = judgeEnd(run, observation, stored)
    const ending = `${terminal.event_type} ${terminal.data.code ?? ""}`.trim()
    if (wrongEnd !== undefined) problems.push(`${run.name} ended ${ending}: ${wrongEnd}`)

    for (const cancel of observation.cancels.filter((c) => c.runId === run.runId)) {
      const others = observation.cancels.filter((c) => c.runId === run.runId && c !== cancel).length
      if (cancel.answer === "ok" && terminal.data.code !== "cancelled") {
        problems.push(`the cancel of action ${cancel.index} was acknowledged, but ${run.name} ended ${ending}`)
      }
      if (cancel.answer === "not_found" && terminal.data.code === "cancelled" && others === 0) {
        problems.push(`the cancel of action ${cancel.index} ended ${run.name}, but was answered not_found`)
      }
    }

    // The owner's own account of the end: one, for a run it ran, and true to what was stored.
    const reports = logsOf(run.runId, ENDED)
    if (reports.length !== (run.acked ? 1 : 0)) {
      problems.push(`${run.name} was reported ended ${reports.length} times by its process`)
    }
    for (const report of reports) {
      const { code, status } = report.annotations
      const true_ = status === "ended elsewhere" ?
        endedElsewhere(terminal) :
        status === statusOf(terminal) && code === terminal.data.code
      if (!true_) {
        problems.push(`${run.name} ended ${ending}, but its process reported "${status}" ${code ?? ""}`.trim())
      }
    }

    // A process never ends a run it holds, whatever its lease says; it holds every run it acknowledged.
    for (const sweep of logsOf(run.runId, SWEPT)) {
      if (sweep.annotations.process === run.via && run.acked) {
        problems.push(`${run.name} was ended as orphaned by its own process, which still held it`)
      }
    }

    // Every refusal the log made must be of an event that really broke the lifecycle.
    const refusals = logsOf(run.runId, REFUSED)
    if (refusals.length > 1) problems.push(`${run.name} had ${refusals.length} events refused; its loop stops at one`)
    for (const refusal of refusals) {
      const reason = refusal.annotations.reason
      const fair = reason === "run_ended" ?
        endedElsewhere(terminal) && reports.every((r) => r.annotations.status === "ended elsewhere") :
        reason === "tool_call_reused" && natural(run.script).end.kind === "tool_call_reused"
      if (!fair) problems.push(`${run.name} had an event refused (${reason}), though it ended ${ending}`)
    }
  }
  return problems
}

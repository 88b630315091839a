/**
 * How the runs a kill left behind ended, read from the stored logs once
 * every run is over. A run of a killed process can end two ways only: by
 * that process before it died, or by the next one, with `agent_error`
 * `internal` "the server running this run stopped", after a
 * `tool_completed` "interrupted" for each tool call it had open, all in
 * one step (consecutive seqs, the terminal last).
 */
import { INTERRUPTED } from "../../src/eventlog/EventLog.ts"
import { ORPHANED } from "../../src/runs/Leases.ts"
import type { EventFrame } from "../../test/utils/ChatClient.ts"
import { isTerminal } from "./tracks.ts"

/** The warning a process logs for each run it ends because its process stopped (src/runs/Leases.ts). */
export const ORPHANED_LOG = "ended a run whose process stopped (its lease expired)"

/** A kill as the clients saw it: the runs going and the tool calls open, by run, at that moment. */
export interface Kill {
  readonly at: number
  readonly inFlight: ReadonlySet<string>
  readonly openTools: ReadonlyMap<string, ReadonlySet<string>>
}

const ms = (event: EventFrame) => Date.parse(event.timestamp)

const isOrphaned = (event: EventFrame | undefined) =>
  event?.event_type === "agent_error" && event.data.code === "internal" && event.data.message === ORPHANED

const isInterrupted = (event: EventFrame) => event.event_type === "tool_completed" && event.data.error === INTERRUPTED

/** Whether an orphaned run ends as it must: its open tool calls closed "interrupted", then the terminal, in one step. */
const endsInOneStep = (run: ReadonlyArray<EventFrame>) => {
  const terminal = run.length - 1
  let first = terminal
  while (first > 0 && isInterrupted(run[first - 1]!)) first--
  const tail = run.slice(first)
  const before = run.slice(0, first)
  if (tail.some((e, i) => e.seq !== tail[0]!.seq + i) || before.some(isInterrupted)) return false
  const completed = new Set(before.filter((e) => e.event_type === "tool_completed").map((e) => e.data.tool_call_id))
  const open = before.filter((e) => e.event_type === "tool_executing" && !completed.has(e.data.tool_call_id))
  const interrupted = new Set(tail.slice(0, -1).map((e) => e.data.tool_call_id))
  return open.length === interrupted.size && open.every((e) => interrupted.has(e.data.tool_call_id))
}

export const analyseKills = (logs: ReadonlyArray<ReadonlyArray<EventFrame>>, kills: ReadonlyArray<Kill>) => {
  const counts = {
    runs_in_flight_at_kills: 0,
    runs_mid_tool_at_kills: 0,
    kills_with_none_mid_tool: 0,
    tool_calls_open_at_kills: 0,
    orphaned: 0,
    in_flight_orphaned: 0,
    in_flight_ended_before_kill: 0,
    in_flight_ended_otherwise: 0,
    interrupted_tool_calls: 0,
    open_at_kill_interrupted: 0,
    interrupted_outside_orphans: 0,
    orphans_not_in_one_step: 0,
    orphans_unexplained: 0,
    kill_to_end_ms_max: 0
  }
  const problems: Array<string> = []
  const runs = new Map<string, Array<EventFrame>>()
  for (const log of logs) {
    for (const event of log) {
      if (event.run_id === null) continue
      const run = runs.get(event.run_id)
      if (run === undefined) runs.set(event.run_id, [event])
      else run.push(event)
    }
  }
  const terminalOf = (runId: string) => {
    const last = runs.get(runId)?.at(-1)
    return last !== undefined && isTerminal(last) ? last : undefined
  }
  for (const [runId, run] of runs) {
    const interrupted = run.filter(isInterrupted)
    counts.interrupted_tool_calls += interrupted.length
    const terminal = terminalOf(runId)
    if (!isOrphaned(terminal)) {
      counts.interrupted_outside_orphans += interrupted.length
      continue
    }
    counts.orphaned++
    if (!endsInOneStep(run)) {
      counts.orphans_not_in_one_step++
      problems.push(`orphaned run ${runId} does not end with its open tool calls interrupted, in one step`)
    }
    // The kill it outlived: the first one after it started, whose next process ended it.
    const kill = kills.find((k) => ms(run[0]!) <= k.at && ms(terminal!) >= k.at)
    if (kill === undefined || run[0]!.event_type !== "agent_started") {
      counts.orphans_unexplained++
      problems.push(
        `orphaned run ${runId} (started ${run[0]!.timestamp}, ended ${
          terminal!.timestamp
        }) was not going at any kill (${kills.map((k) => new Date(k.at).toISOString()).join(", ")})`
      )
    } else {
      counts.kill_to_end_ms_max = Math.max(counts.kill_to_end_ms_max, ms(terminal!) - kill.at)
    }
  }
  for (const kill of kills) {
    counts.runs_in_flight_at_kills += kill.inFlight.size
    if (![...kill.openTools.values()].some((open) => open.size > 0)) counts.kills_with_none_mid_tool++
    for (const [runId, open] of kill.openTools) {
      if (open.size > 0) counts.runs_mid_tool_at_kills++
      counts.tool_calls_open_at_kills += open.size
      const interrupted = new Set(runs.get(runId)?.filter(isInterrupted).map((e) => e.data.tool_call_id))
      for (const id of open) if (interrupted.has(id)) counts.open_at_kill_interrupted++
    }
    for (const runId of kill.inFlight) {
      const terminal = terminalOf(runId)
      if (isOrphaned(terminal)) counts.in_flight_orphaned++
      // Only the killed process can have ended it otherwise, so before it died (its clock is this one's).
      else if (terminal !== undefined && ms(terminal) <= kill.at + 250) counts.in_flight_ended_before_kill++
      else {
        counts.in_flight_ended_otherwise++
        problems.push(`run ${runId}, going at a kill, ended ${terminal?.event_type ?? "never"} ${terminal?.timestamp}`)
      }
    }
  }
  return { counts, problems }
}

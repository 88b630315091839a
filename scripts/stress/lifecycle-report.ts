/**
 * The lifecycle scenario's invariants, from what it recorded and the
 * stored logs read once every run was over: the run checker over every
 * log and stream, how the kills' runs ended, and what the clients got.
 */
import type { EventFrame } from "../../test/utils/ChatClient.ts"
import { type Invariant, invariant } from "./common.ts"
import { analyseKills, type Kill } from "./lifecycle-check.ts"
import type { Member, ThreadState } from "./lifecycle-clients.ts"
import type { ProcessLogs } from "./lifecycle-process.ts"
import type { LifecycleConfig } from "./lifecycle.ts"
import { RunCheck } from "./tracks.ts"

export interface Recorded {
  readonly config: LifecycleConfig
  readonly kind: string
  readonly threads: ReadonlyArray<ThreadState>
  /** Each thread's stored log, in the order of `threads`. */
  readonly stored: ReadonlyArray<ReadonlyArray<EventFrame>>
  readonly members: ReadonlyArray<Member>
  readonly kills: ReadonlyArray<Kill>
  readonly logs: ProcessLogs
  readonly counts: Readonly<Record<string, number>>
  /** How long each server process took to listen, the first included. */
  readonly starts: ReadonlyArray<number>
  readonly activeAtEnd: number
  /** Threads that completed a run started on the last server: none left busy by a dead process's run. */
  readonly freeAfterRestart: number
  readonly seconds: number
}

const sum = <A>(items: ReadonlyArray<A>, f: (item: A) => number) => items.reduce((total, item) => total + f(item), 0)

export const report = (recorded: Recorded): Array<Invariant> => {
  const { config, kills, logs, members, stored, threads } = recorded
  const storedCheck = new RunCheck()
  stored.forEach((log, i) => storedCheck.check(`stored ${threads[i]!.id}`, log, { ended: true }))
  const { counts: ended, problems } = analyseKills(stored, kills)
  const runs = {
    database_pglite: recorded.kind === "pglite" ? 1 : 0,
    kills: kills.length,
    server_starts: recorded.starts.length,
    first_start_ms: recorded.starts[0] ?? 0,
    restart_ms_max: Math.max(0, ...recorded.starts.slice(1)),
    threads: threads.length,
    runs_sent: recorded.counts.sent ?? 0,
    runs_stored: storedCheck.runs,
    runs_in_flight_at_kills: ended.runs_in_flight_at_kills,
    runs_mid_tool_at_kills: ended.runs_mid_tool_at_kills,
    kills_with_none_mid_tool: ended.kills_with_none_mid_tool,
    stored_logs_checked: storedCheck.logs,
    violations: storedCheck.violations,
    runs_active_at_end: recorded.activeAtEnd,
    threads_free_after_last_restart: recorded.freeAfterRestart,
    server_errors_logged: logs.errors,
    other_warnings_logged: logs.otherWarnings,
    seconds: Math.round(recorded.seconds)
  }
  const byId = new Map(threads.map((t, i) => [t.id, stored[i]!]))
  const streamCheck = new RunCheck()
  const delivery = {
    clients: members.length,
    connections: sum(members, (m) => m.connections),
    unexpected_closes: sum(members, (m) => m.unexpectedCloses),
    reconnect_retries: sum(members, (m) => m.retries),
    streams: 0,
    events_received: 0,
    gaps: 0,
    duplicates: 0,
    missing: 0,
    id_mismatches: 0,
    not_as_stored: 0,
    foreign_events: sum(members, (m) => m.foreign),
    unreadable: sum(
      members,
      (m) => m.unreadable + (m.connection?.closed === undefined ? m.connection?.unreadable ?? 0 : 0)
    ),
    stream_runs_checked: 0,
    stream_violations: 0,
    ...recorded.counts
  }
  for (const member of members) {
    for (const [threadId, track] of member.tracks) {
      const log = byId.get(threadId)!
      delivery.streams++
      delivery.events_received += track.received
      delivery.gaps += track.outOfOrder
      delivery.duplicates += track.duplicates
      delivery.missing += track.missing(log.at(-1)?.seq ?? 0)
      delivery.id_mismatches += track.mismatched
      delivery.not_as_stored += track.events.filter((e) => log[e.seq - 1]?.event_id !== e.event_id).length
      // An owner's stream is the whole thread; the watcher's starts after the head at its first join.
      streamCheck.check(`${member.user} in ${threadId}`, track.events, {
        ended: true,
        ...(track.after === 0 ? {} : { partial: true, firstSeq: track.after + 1 })
      })
    }
  }
  delivery.stream_runs_checked = streamCheck.runs
  delivery.stream_violations = streamCheck.violations
  const deliveryFaults = delivery.unexpected_closes + delivery.gaps + delivery.duplicates + delivery.missing +
    delivery.id_mismatches + delivery.not_as_stored + delivery.foreign_events + delivery.unreadable +
    delivery.stream_violations
  return [
    invariant(
      "lifecycle: kill -9 during runs with tool calls, restart on the same database; every stored log passes the run checker",
      runs.kills === config.kills && runs.runs_in_flight_at_kills >= config.minInFlight &&
        ended.kills_with_none_mid_tool === 0 && runs.violations === 0 && runs.runs_active_at_end === 0 &&
        runs.threads_free_after_last_restart === threads.length &&
        runs.server_errors_logged === 0,
      runs,
      [...storedCheck.first, ...logs.first].slice(0, 6).join("; ")
    ),
    invariant(
      "lifecycle: every run a kill left going ended agent_error internal, its open tool calls first closed \"interrupted\"",
      ended.orphaned > 0 && ended.interrupted_tool_calls > 0 && ended.in_flight_ended_otherwise === 0 &&
        ended.interrupted_outside_orphans + ended.orphans_not_in_one_step + ended.orphans_unexplained === 0 &&
        logs.reaped === ended.orphaned,
      { ...ended, reaped_logged: logs.reaped },
      [...problems.slice(0, 6), ...logs.first].join("; ") ||
        `${logs.reaped} runs logged as reaped, ${ended.orphaned} stored as such`
    ),
    invariant(
      "lifecycle: each client's stream across the restarts is its threads' stored log, each event once, in order",
      delivery.streams === threads.length * 2 && (recorded.counts.probes_busy ?? 0) > 0 && deliveryFaults === 0,
      delivery,
      [...streamCheck.first, ...members.flatMap((m) => m.firstRetry ?? [])].join("; ") ||
        `${deliveryFaults} faults, ${recorded.counts.probes_busy} probes refused busy`
    )
  ]
}

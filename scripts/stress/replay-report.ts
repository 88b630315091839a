/**
 * The replay scenario's invariants, from what its clients received, the
 * stored logs and the run checker's verdicts on both.
 */
import type { StressClient } from "./client.ts"
import { type Invariant, invariant } from "./common.ts"
import type { ReplayConfig } from "./replay.ts"
import type { StressServer } from "./server.ts"
import type { RunCheck, ThreadTrack } from "./tracks.ts"

export const REPLAY_INVARIANTS = [
  "reconnect/replay: every joined client gets each event of its threads exactly once, in seq order",
  "runs under reconnect churn: every stored log and every client's stream passes the run checker, every run completed"
] as const

export interface ThreadState {
  readonly id: string
  readonly canonical: Map<number, string>
  readonly owner: ThreadTrack
  activeRun: string | undefined
  completed: number
  failed: number
}

export interface Observer {
  readonly user: string
  readonly threads: ReadonlyArray<ThreadState>
  readonly tracks: Map<string, ThreadTrack>
  cycles: number
  midRun: number
  replayed: number
  foreign: number
  unreadable: number
  reconnectErrors: number
  lastError: string | undefined
  client: StressClient | undefined
}

export const report = (
  config: ReplayConfig,
  server: StressServer,
  threads: ReadonlyArray<ThreadState>,
  observers: ReadonlyArray<Observer>,
  heads: ReadonlyMap<string, number>,
  extra: {
    readonly stored: RunCheck
    readonly streams: RunCheck
    readonly headMismatch: number
    readonly ownerForeign: number
    readonly ownerUnreadable: number
  }
): Array<Invariant> => {
  const tracks = [
    ...threads.map((t) => ({ who: "owner", thread: t, track: t.owner })),
    ...observers.flatMap((o) => o.threads.map((t) => ({ who: o.user, thread: t, track: o.tracks.get(t.id)! })))
  ]
  const problems: Array<string> = []
  const counts = {
    cycles: sum(observers, (o) => o.cycles),
    cycles_mid_run: sum(observers, (o) => o.midRun),
    clients: observers.length + 1,
    threads: threads.length,
    events: sum(threads, (t) => heads.get(t.id)!),
    delivered: sum(tracks, (x) => x.track.received),
    replayed: sum(observers, (o) => o.replayed),
    gaps: sum(tracks, (x) => x.track.outOfOrder),
    duplicates: sum(tracks, (x) => x.track.duplicates),
    missing: 0,
    id_mismatches: sum(tracks, (x) => x.track.mismatched),
    bad_endings: 0,
    foreign_events: sum(observers, (o) => o.foreign) + extra.ownerForeign,
    reconnect_errors: sum(observers, (o) => o.reconnectErrors),
    server_errors_logged: server.logs.errors
  }
  for (const { who, thread, track } of tracks) {
    const head = heads.get(thread.id)!
    const missing = track.missing(head)
    counts.missing += missing
    const badEnding = !track.endsWithTerminal(head)
    if (badEnding) counts.bad_endings++
    if (missing + track.duplicates + track.outOfOrder + track.mismatched > 0 || badEnding) {
      problems.push(
        `${who} in ${thread.id}: head ${head}, last ${track.last} (${track.lastEvent?.event_type}), missing ${missing}, ` +
          `duplicates ${track.duplicates}, out of order ${track.outOfOrder}, mismatched ${track.mismatched}`
      )
    }
  }
  const lastError = observers.find((o) => o.lastError !== undefined)?.lastError
  if (lastError !== undefined) problems.push(`reconnect error: ${lastError}`)
  if (extra.headMismatch > 0) problems.push(`${extra.headMismatch} thread(s) whose stored head differs from the stream`)
  problems.push(...server.logs.first)
  const unreadable = sum(observers, (o) => o.unreadable + (o.client?.unreadable ?? 0)) + extra.ownerUnreadable
  const delivery = invariant(
    REPLAY_INVARIANTS[0],
    counts.cycles_mid_run >= config.cycles && counts.replayed > 0 && unreadable === 0 && extra.headMismatch === 0 &&
      counts.gaps + counts.duplicates + counts.missing + counts.id_mismatches + counts.bad_endings +
            counts.foreign_events + counts.reconnect_errors + counts.server_errors_logged === 0,
    counts,
    counts.cycles_mid_run < config.cycles
      ? `only ${counts.cycles_mid_run} of ${config.cycles} cycles happened during a run`
      : problems.slice(0, 6).join("; ")
  )
  const { stored, streams } = extra
  const runs = {
    runs: stored.runs,
    completed: sum(threads, (t) => t.completed),
    failed: sum(threads, (t) => t.failed),
    stored_logs_checked: stored.logs,
    stored_violations: stored.violations,
    streams_checked: streams.logs,
    stream_runs_checked: streams.runs,
    stream_violations: streams.violations
  }
  const shape = invariant(
    REPLAY_INVARIANTS[1],
    runs.runs >= threads.length && runs.completed === runs.runs && runs.failed === 0 &&
      runs.stored_violations + runs.stream_violations === 0,
    runs,
    [`${runs.failed} failed runs`, ...stored.first, ...streams.first].slice(0, 6).join("; ")
  )
  return [delivery, shape]
}

const sum = <A>(items: ReadonlyArray<A>, f: (item: A) => number) => items.reduce((total, item) => total + f(item), 0)

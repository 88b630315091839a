/**
 * A stalled client. One member stops reading its socket (paused, as a
 * client whose process hangs) while a run floods the thread: the server
 * must close it with 1013 once its small outbox is full, the other members
 * must receive the whole run while it is still stalled, and on reconnect
 * with `after_seq` it must get the rest of the thread exactly once.
 */
import type { Socket } from "node:net"
import type { EventFrame } from "../../test/utils/ChatClient.ts"
import type { StressClient } from "./client.ts"
import { type Budget, type Invariant, invariant } from "./common.ts"
import { Random } from "./random.ts"
import { floodModel, startServer } from "./server.ts"
import { isTerminal, RunCheck, storedLog } from "./tracks.ts"

export interface StallConfig {
  readonly seed: number
  readonly rounds: number
  /** Members that keep reading. */
  readonly readers: number
  /** The flood: deltas of one run, and the size of each. */
  readonly pieces: number
  readonly pieceBytes: number
}

const OUTBOX = 16

/** Collects a client's events of one thread, and resolves when the given run's terminal event arrives. */
const collect = (client: StressClient, into: Array<EventFrame>) => {
  const ends = new Map<string, () => void>()
  client.onEvent = (event) => {
    into.push(event)
    if (event.run_id !== null && isTerminal(event)) ends.get(event.run_id)?.()
  }
  return (runId: string, timeoutMs: number) =>
    into.some((e) => e.run_id === runId && isTerminal(e))
      ? Promise.resolve()
      : new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`run ${runId} did not end within ${timeoutMs} ms`)), timeoutMs)
        ends.set(runId, () => {
          clearTimeout(timer)
          resolve()
        })
      })
}

/** How far `events` is from being exactly seqs 1..n in order, each once, with the ids of `reference`. */
const compare = (events: ReadonlyArray<EventFrame>, reference: ReadonlyArray<EventFrame>) => {
  let gaps = 0
  let duplicates = 0
  const seen = new Set<number>()
  events.forEach((event, i) => {
    if (seen.has(event.seq)) duplicates++
    else if (event.seq !== i + 1 || reference[i]?.event_id !== event.event_id) gaps++
    seen.add(event.seq)
  })
  return { gaps, duplicates, missing: Math.max(0, reference.length - seen.size) }
}

export const stallScenario = async (config: StallConfig, budget: Budget): Promise<Array<Invariant>> => {
  const random = new Random(config.seed, "stall")
  const server = await startServer({
    config: { outboxCapacity: OUTBOX },
    model: floodModel(config.pieces, config.pieceBytes)
  })
  const counts = {
    rounds: 0,
    closed_1013: 0,
    other_close_codes: 0,
    reader_events: 0,
    readers_done_after_stalled_dropped: 0,
    stalled_events_before_close: 0,
    replayed_after_reconnect: 0,
    gaps: 0,
    duplicates: 0,
    missing: 0,
    server_errors_logged: 0
  }
  const checked = { stored_logs: 0, stored_runs: 0, streams: 0, stream_runs: 0, violations: 0 }
  const problems: Array<string> = []
  const stored = new RunCheck()
  const streams = new RunCheck()
  try {
    for (let round = 0; round < config.rounds; round++) {
      budget.check(`stall round ${round}`)
      const readerNames = Array.from({ length: config.readers }, (_, i) => `reader-${round}-${i}`)
      const stalledName = `stalled-${round}`
      const owner = await server.connect(random.pick(readerNames))
      const { thread_id } = await owner.request({ type: "create_thread", members: [...readerNames, stalledName] })
      owner.close()
      const readers = await Promise.all(readerNames.map((name) => server.connect(name)))
      const stalled = await server.connect(stalledName)
      const seen = readers.map(() => [] as Array<EventFrame>)
      const waits = readers.map((reader, i) => collect(reader, seen[i]!))
      const stalledSeen: Array<EventFrame> = []
      collect(stalled, stalledSeen)
      for (const client of [...readers, stalled]) await client.request({ type: "join_thread", thread_id })

      // The stalled client stops reading: its kernel buffers fill, then its outbox, then the server closes it.
      const closesBefore = server.hub.counters.slowConsumerCloses
      const socket = (stalled.ws as unknown as { _socket: Socket })._socket
      socket.pause()
      const sender = random.pick(readers)
      const { run_id } = await sender.request({ type: "send_message", thread_id, content: `flood ${round}` }, 30_000)
      await Promise.all(waits.map((wait) => wait(run_id, budget.timeout(120_000))))
      // Every reader has the whole run while the stalled client, still not reading, has already been dropped.
      if (server.hub.counters.slowConsumerCloses > closesBefore) {
        counts.readers_done_after_stalled_dropped += readers.length
      }
      socket.resume()
      const close = await stalled.waitClose(budget.timeout(30_000))
      if (close.code === 1013) counts.closed_1013++
      else counts.other_close_codes++
      counts.stalled_events_before_close += stalledSeen.length

      const reference = seen[0]!
      const again = await server.connect(stalledName)
      const wait = collect(again, stalledSeen)
      const before = stalledSeen.length
      await again.request({ type: "join_thread", thread_id, after_seq: stalledSeen.at(-1)?.seq ?? 0 })
      await wait(run_id, budget.timeout(60_000))
      counts.replayed_after_reconnect += stalledSeen.length - before
      for (const events of [...seen, stalledSeen]) {
        const diff = compare(events, reference)
        counts.gaps += diff.gaps
        counts.duplicates += diff.duplicates
        counts.missing += diff.missing
        counts.reader_events += events === stalledSeen ? 0 : events.length
      }
      // Each member joined before the thread's first event, so each stream is the whole thread.
      const log = await storedLog((path) => server.fetchAs(readerNames[0]!, path), thread_id)
      stored.check(`stored ${thread_id}`, log, { ended: true })
      seen.forEach((events, i) => streams.check(`${readerNames[i]} in ${thread_id}`, events, { ended: true }))
      streams.check(`${stalledName} in ${thread_id}`, stalledSeen, { ended: true })
      if (stalledSeen.length !== reference.length) {
        problems.push(`round ${round}: stalled client has ${stalledSeen.length} of ${reference.length} events`)
      }
      for (const client of [...readers, again]) client.close()
      counts.rounds++
    }
  } finally {
    Object.assign(checked, {
      stored_logs: stored.logs,
      stored_runs: stored.runs,
      streams: streams.logs,
      stream_runs: streams.runs,
      violations: stored.violations + streams.violations
    })
    await server.closeReporting(counts, problems)
  }
  return [
    invariant(
      "stalled client: closed with 1013 while the others got the whole run, then recovers everything by replay",
      counts.rounds === config.rounds && counts.closed_1013 === config.rounds && counts.other_close_codes === 0 &&
        counts.readers_done_after_stalled_dropped === config.rounds * config.readers &&
        counts.replayed_after_reconnect > 0 &&
        counts.gaps + counts.duplicates + counts.missing + counts.server_errors_logged + problems.length === 0,
      counts,
      problems.slice(0, 5).join("; ")
    ),
    invariant(
      "stalled client: every stored log and every member's stream (the stalled one's across its reconnect) pass the run checker",
      checked.stored_runs === config.rounds && checked.streams === config.rounds * (config.readers + 1) &&
        checked.violations === 0,
      checked,
      [...stored.first, ...streams.first].join("; ")
    )
  ]
}

/**
 * Bookkeeping of what clients receive: one client's view of a thread
 * across all its connections, checked as it arrives; the run rules of
 * PROTOCOL.md section 3 judged by the one checker (`runViolations`) over
 * streams and stored logs alike; and a small async semaphore.
 */
import type { EventFrame } from "../../test/utils/ChatClient.ts"
import { type CheckOptions, runViolations } from "../../test/utils/RunInvariants.ts"

export const isTerminal = (event: EventFrame) =>
  event.event_type === "agent_completed" || event.event_type === "agent_error"

/**
 * One logical client's stream of one thread, whichever connection each event came on: it must be
 * exactly after+1..head, each seq once, in order.
 */
export class ThreadTrack {
  last = 0
  lastEvent: EventFrame | undefined
  received = 0
  duplicates = 0
  /** Events that were not `last + 1` and not duplicates: a gap opened, or an event came late. */
  outOfOrder = 0
  /** Events whose id differs from the one another client saw for the same seq. */
  mismatched = 0
  /** Every event received, in arrival order, duplicates included: the stream the run checker judges. */
  readonly events: Array<EventFrame> = []
  private readonly seen = new Set<number>()

  /**
   * `canonical` maps seq to event id, shared by every client of the thread: the first to see a seq sets it.
   * `after` is the seq the stream starts after: 0 for a whole thread, the head at a late join.
   */
  constructor(private readonly canonical: Map<number, string>, readonly after = 0) {
    this.last = after
  }

  /** Whether the event is new to this stream. */
  accept(event: EventFrame): boolean {
    this.received++
    this.events.push(event)
    if (this.seen.has(event.seq)) {
      this.duplicates++
      return false
    }
    if (event.seq !== this.last + 1) this.outOfOrder++
    this.seen.add(event.seq)
    const id = this.canonical.get(event.seq)
    if (id === undefined) this.canonical.set(event.seq, event.event_id)
    else if (id !== event.event_id) this.mismatched++
    if (event.seq > this.last) {
      this.last = event.seq
      this.lastEvent = event
    }
    return true
  }

  /** Seqs after the start, up to `head`, never received. */
  missing(head: number) {
    let count = 0
    for (let seq = this.after + 1; seq <= head; seq++) if (!this.seen.has(seq)) count++
    return count
  }

  /** Whether the stream is complete up to `head` and ends with a run's terminal event. */
  endsWithTerminal(head: number) {
    return this.last === head && this.lastEvent !== undefined && isTerminal(this.lastEvent)
  }
}

/** Bounds how many clients do something at once (reconnects hitting the database, say). */
export class Semaphore {
  private waiters: Array<() => void> = []

  constructor(private permits: number) {}

  async with<A>(task: () => Promise<A>): Promise<A> {
    if (this.permits > 0) this.permits--
    else await new Promise<void>((resolve) => this.waiters.push(resolve))
    try {
      return await task()
    } finally {
      const next = this.waiters.shift()
      if (next === undefined) this.permits++
      else next()
    }
  }
}

/** What the run checker found over some logs or streams: how many it checked, and what was wrong. */
export class RunCheck {
  logs = 0
  runs = 0
  violations = 0
  /** The first few violations, each with the log it came from. */
  readonly first: Array<string> = []

  check(label: string, events: ReadonlyArray<EventFrame>, options: CheckOptions) {
    const problems = runViolations(events, options)
    this.logs++
    this.runs += new Set(events.flatMap((e) => e.run_id === null ? [] : [e.run_id])).size
    this.violations += problems.length
    for (const problem of problems.slice(0, 5 - this.first.length)) this.first.push(`${label}: ${problem}`)
    return problems
  }
}

/** The page size of the history endpoint's largest page. */
const PAGE = 10_000

/** A thread's whole stored log, page after page with `after_seq`, from the history endpoint. */
export const storedLog = async (
  get: (path: string) => Promise<Response>,
  threadId: string
): Promise<Array<EventFrame>> => {
  const events: Array<EventFrame> = []
  for (;;) {
    const after = events.at(-1)?.seq ?? 0
    const response = await get(`/api/threads/${threadId}/events?after_seq=${after}&limit=${PAGE}`)
    if (response.status !== 200) throw new Error(`reading the log of ${threadId}: ${response.status}`)
    const page = await response.json() as { events: Array<EventFrame>; head_seq: number }
    events.push(...page.events)
    if (page.events.length < PAGE || (events.at(-1)?.seq ?? 0) >= page.head_seq) return events
  }
}

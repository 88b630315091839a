/**
 * Bookkeeping of what clients receive, checked as it arrives: one client's
 * view of a thread across all its connections, the ordering rules of a
 * run (PROTOCOL.md section 3), and a small async semaphore.
 */
import type { EventFrame } from "../../src/client/ChatClient.ts"

export const isTerminal = (event: EventFrame) =>
  event.event_type === "agent_completed" || event.event_type === "agent_error"

/**
 * One logical client's stream of one thread, whichever connection each event came on: it must be
 * exactly 1..head, each seq once, in order.
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
  private readonly seen = new Set<number>()

  /** `canonical` maps seq to event id, shared by every client of the thread: the first to see a seq sets it. */
  constructor(private readonly canonical: Map<number, string>) {}

  accept(event: EventFrame) {
    this.received++
    if (this.seen.has(event.seq)) {
      this.duplicates++
      return
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
  }

  /** Seqs in 1..head never received. */
  missing(head: number) {
    let count = 0
    for (let seq = 1; seq <= head; seq++) if (!this.seen.has(seq)) count++
    return count
  }

  /** Whether the stream is complete up to `head` and ends with a run's terminal event. */
  endsWithTerminal(head: number) {
    return this.last === head && this.lastEvent !== undefined && isTerminal(this.lastEvent)
  }
}

/**
 * The order of runs in a thread's complete stream: `agent_started` opens a run, every event with a
 * run id belongs to the open run, one terminal event closes it. Runs of a thread never overlap (the
 * second is refused `busy`).
 */
export class RunShape {
  runs = 0
  violations = 0
  private open: string | undefined

  accept(event: EventFrame) {
    if (event.run_id === null) {
      if (event.event_type !== "message_created") this.violations++
      return
    }
    if (event.event_type === "agent_started") {
      if (this.open !== undefined) this.violations++
      this.open = event.run_id
      this.runs++
      return
    }
    if (event.run_id !== this.open) this.violations++
    if (isTerminal(event)) this.open = undefined
  }

  get ended() {
    return this.open === undefined
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

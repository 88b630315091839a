/**
 * A joined thread: the last `seq` seen (what a rejoin asks to resume
 * after), who is online, its events exactly once and in order (a duplicate
 * by `seq` is dropped; a gap is reported and the thread rejoined from the
 * last `seq` seen), and the runs of the messages sent from here.
 */
import { identity, Stream } from "effect"
import type { OnBusy } from "../protocol/ClientFrames.ts"
import { Listeners } from "./Feed.ts"
import { Run, type RunHost } from "./Run.ts"
import type { Ack, Gap, Presence, Request, ThreadEvent, ThreadUpdate } from "./Types.ts"

export interface ThreadHost extends RunHost {
  readonly request: (frame: Request, options?: { readonly timeoutMs?: number }) => Promise<Ack>
  /** Asks the server again for the events after `lastSeq` (after a gap). */
  readonly resync: (thread: Thread) => void
  readonly leave: (thread: Thread) => Promise<void>
  readonly emit: (update: ThreadUpdate) => void
  readonly userId: () => string | undefined
}

export interface SendOptions {
  /** What the server does when a run is already in progress (PROTOCOL.md section 2); `reject` by default. */
  readonly onBusy?: OnBusy
  readonly timeoutMs?: number
}

/** Runs whose events arrived before their handle existed, kept this many at most. */
const UNCLAIMED_RUNS = 16

export class Thread {
  /** The last `seq` delivered; a rejoin resumes after it. */
  lastSeq: number
  /** The thread's `head_seq` at the last (re)join. */
  headSeq = 0
  /** Members online, as of the last join ack or `presence` frame. */
  online: ReadonlyArray<string> = []
  /** True while the connection has (or, reconnecting, will have again) joined the thread. */
  joined = false
  /** @internal Events are being asked for again: a skipped `seq` until then is not a new gap. */
  resyncing = false
  private readonly updates = new Listeners<ThreadUpdate>()
  private readonly runs = new Map<string, Run>()
  private readonly queued = new Map<string, Run>()
  private readonly unclaimed = new Map<string, Array<ThreadEvent>>()
  private readonly startedBy = new Map<string, string>()

  constructor(private readonly host: ThreadHost, readonly id: string, afterSeq: number) {
    this.lastSeq = afterSeq
  }

  /** Listens to the thread's events, presence changes and gaps; returns the unsubscribe. */
  on(listener: (update: ThreadUpdate) => void): () => void {
    return this.updates.add(listener)
  }

  /** The thread's events, presence changes and gaps from now on. */
  updatesIterator(): AsyncIterableIterator<ThreadUpdate> {
    return this.updates.iterate()
  }

  /** The thread's events (only events) from now on, as an async iterable. */
  async *events(): AsyncIterableIterator<ThreadEvent> {
    for await (const update of this.updates.iterate()) if (update.type === "event") yield update
  }

  /** The thread's events, presence changes and gaps, as an Effect Stream that ends when the thread is left. */
  get stream(): Stream.Stream<ThreadUpdate> {
    return Stream.fromAsyncIterable({ [Symbol.asyncIterator]: () => this.updates.iterate() }, identity).pipe(
      Stream.orDie
    )
  }

  /** Sends a message; resolves once the server acknowledged it, with the handle of its run. */
  async send(content: string, options: SendOptions = {}): Promise<Run> {
    const ack = await this.host.request(
      {
        type: "send_message",
        thread_id: this.id,
        content,
        ...(options.onBusy === undefined ? {} : { on_busy: options.onBusy })
      },
      options.timeoutMs === undefined ? {} : { timeoutMs: options.timeoutMs }
    )
    const runId = ack.run_id ?? this.startedBy.get(ack.message_id ?? "") ?? null
    const run = new Run(this.host, this.id, ack.message_id ?? "", runId, ack.queued === true)
    if (runId === null) this.queued.set(run.messageId, run)
    else this.claim(run, runId)
    return run
  }

  private claim(run: Run, runId: string) {
    run.start(runId)
    const early = this.unclaimed.get(runId) ?? []
    this.unclaimed.delete(runId)
    for (const event of early) run.push(event)
    if (run.terminal === undefined) this.runs.set(runId, run)
  }

  addMembers(userIds: ReadonlyArray<string>): Promise<Ack> {
    return this.host.request({ type: "add_members", thread_id: this.id, user_ids: userIds })
  }

  removeMembers(userIds: ReadonlyArray<string>): Promise<Ack> {
    return this.host.request({ type: "remove_members", thread_id: this.id, user_ids: userIds })
  }

  /** Leaves the thread: no more of its events, and no rejoin on reconnect. */
  leave(): Promise<void> {
    return this.host.leave(this)
  }

  /** @internal A (re)join's ack. */
  joinedWith(ack: Ack) {
    this.joined = true
    this.resyncing = false
    if (ack.head_seq !== undefined) this.headSeq = ack.head_seq
    if (ack.online !== undefined) this.presence({ type: "presence", thread_id: this.id, online: ack.online })
  }

  /** @internal A `presence` frame, or the `online` of a join ack: told only when the list changed. */
  presence(frame: Presence) {
    const same = frame.online.length === this.online.length && frame.online.every((u, i) => u === this.online[i])
    this.online = frame.online
    if (!same) this.emit(frame)
  }

  /**
   * @internal An event of this thread, live or replayed: delivered only when its `seq` is the next one.
   * `event` is undefined for an event type this SDK does not know: it counts for `seq`, and is not delivered.
   */
  receive(seq: number, event: ThreadEvent | undefined) {
    if (seq <= this.lastSeq) return
    if (seq !== this.lastSeq + 1) {
      if (!this.resyncing) {
        const gap: Gap = { type: "gap", thread_id: this.id, expected: this.lastSeq + 1, received: seq }
        this.emit(gap)
        this.host.resync(this)
      }
      return
    }
    this.lastSeq = seq
    if (event === undefined) return
    this.route(event)
    this.emit(event)
    if (event.event_type === "members_changed" && event.data.removed.includes(this.host.userId() ?? "")) {
      // Removed: the server dropped this connection's join, and a rejoin would be refused.
      this.joined = false
    }
  }

  private route(event: ThreadEvent) {
    if (event.event_type === "agent_started" && event.run_id !== null) {
      const waiting = this.queued.get(event.data.message_id)
      if (waiting !== undefined) {
        this.queued.delete(event.data.message_id)
        this.claim(waiting, event.run_id)
      } else {
        this.startedBy.set(event.data.message_id, event.run_id)
        if (this.startedBy.size > UNCLAIMED_RUNS * 4) this.startedBy.delete(this.startedBy.keys().next().value!)
      }
    }
    if (event.run_id === null) return
    const run = this.runs.get(event.run_id)
    if (run !== undefined) {
      run.push(event)
      if (run.terminal !== undefined) this.runs.delete(event.run_id)
      return
    }
    const early = this.unclaimed.get(event.run_id)
    if (early !== undefined) early.push(event)
    else {
      this.unclaimed.set(event.run_id, [event])
      if (this.unclaimed.size > UNCLAIMED_RUNS) this.unclaimed.delete(this.unclaimed.keys().next().value!)
    }
  }

  private emit(update: ThreadUpdate) {
    this.updates.emit(update)
    this.host.emit(update)
  }

  /** @internal The client closed, or the thread was left: runs still open fail, iterators end. */
  end(error: Error) {
    this.joined = false
    for (const run of this.runs.values()) run.fail(error)
    for (const run of this.queued.values()) run.fail(error)
    this.runs.clear()
    this.queued.clear()
    this.updates.end()
  }
}

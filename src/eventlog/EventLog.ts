/**
 * EventLog: the only way an event enters a thread. It appends in the
 * caller's transaction (or its own), publishes once that commits, and
 * enforces the run lifecycle of PROTOCOL.md section 3 before storing
 * anything: no event of an ended run or of another process's run, no
 * `tool_completed` without its open `tool_executing`, no reused tool call
 * id, and a run starts and ends only through `startRun` and `endRun`.
 * Ending a run, whatever ends it, closes its open tool calls first, then
 * stores the terminal event, in one transaction: exactly one terminal, last.
 *
 * Appends are group-committed. A run appends once per streamed delta, so
 * one transaction per append would ask the database for one commit per
 * delta of every run at once. Instead an append made outside a transaction
 * is queued, and one committer fiber stores everything queued so far in
 * one transaction (one lock of the batch's threads, one read of its runs,
 * one seq allocation, one INSERT) and publishes it in one call; appends
 * arriving meanwhile wait for the next batch. Nothing waits on a timer, so
 * a lone append is stored as soon as it would have been. The guarantees
 * hold as before. Exactly one terminal, last: the batch locks its threads
 * before it checks anything, and `endRun` takes the same lock, so either
 * the run's end commits first and the batch refuses its events (run
 * ended), or the batch commits first and the terminal comes after them.
 * Nothing of a refused append stored: each append is checked alone, in
 * the order appends were submitted, and its check writes nothing when it
 * refuses (see `check`), so a refused one fails alone while the others of
 * its batch are stored. Seqs contiguous per thread: they are allocated
 * once every append of the batch is checked, only for those accepted,
 * consecutive per thread in submission order, so no refusal leaves a gap.
 * A database failure fails every append of the batch not refused.
 *
 * Two kinds of append keep their own transaction: one made inside a
 * caller's transaction joins it (it must commit or roll back with it), and
 * one of several events including a tool call's start or end, whose check
 * writes the tool call's row before a later event of it may be refused:
 * only rolling back its own transaction stores nothing of it then.
 */
import { Clock, Context, Data, Effect, Exit, FiberId, Layer, Option, type Queue, type Scope } from "effect"
import { randomUUID } from "node:crypto"
import { hostname } from "node:os"
import { AppConfig } from "../config/AppConfig.ts"
import { inTransaction } from "../database/Transaction.ts"
import type { DatabaseError } from "../domain/Errors.ts"
import { draft, encodeEnvelope, type EventDraft, type EventType, type StoredEvent } from "../protocol/Events.ts"
import { Broker, type BrokerMessage } from "./Broker.ts"
import { type EndStatus, EventStore, type RunRecord, type RunRef } from "./EventStore.ts"

/** How a run ends: its status and its terminal event. */
export interface Terminal {
  readonly status: EndStatus
  readonly event: Extract<EventDraft, { event_type: "agent_completed" | "agent_error" }>
  /**
   * The terminal event's id, chosen once for this end: a retry of `endRun` whose earlier attempt
   * committed but lost its answer finds this id stored, and knows the end is its own.
   */
  readonly eventId: string
}

/** A queued message whose run has started. */
export interface QueuedStart {
  readonly runId: string
  readonly messageId: string
}

export type LifecycleReason =
  | "unknown_thread"
  | "unknown_run"
  | "wrong_thread"
  | "run_ended"
  | "not_owner"
  | "tool_call_reused"
  | "tool_call_not_open"
  | "reserved_event"
  | "missing_run_id"

/** An event the log refused because it breaks the run lifecycle; nothing of its append was stored. */
export class LifecycleError extends Data.TaggedError("LifecycleError")<{
  readonly threadId: string
  readonly runId: string | null
  readonly eventType: EventType
  readonly reason: LifecycleReason
}> {
  override get message() {
    return `${this.eventType} refused: ${this.reason.replaceAll("_", " ")}`
  }
}

/** Events only `startRun` and `endRun` may store. */
const RESERVED: ReadonlySet<EventType> = new Set(["agent_started", "agent_completed", "agent_error"])
/** Events that belong to no run. */
const THREAD_EVENTS: ReadonlySet<EventType> = new Set(["message_created", "members_changed"])

export const INTERRUPTED = "interrupted"

/** The broker's message for a stored event: its envelope, and whom it cuts off. */
export const toLive = (event: StoredEvent): BrokerMessage => {
  const message = { threadId: event.thread_id, seq: event.seq, payload: encodeEnvelope(event) }
  if ((event.event_type === "agent_completed" || event.event_type === "agent_error") && event.run_id !== null) {
    return { ...message, ended: event.run_id }
  }
  if (event.event_type !== "members_changed") return message
  const removed = (event.data as { readonly removed?: ReadonlyArray<string> }).removed ?? []
  return removed.length === 0
    ? { ...message, membersChanged: true }
    : { ...message, membersChanged: true, revoke: removed }
}

/**
 * The most appends one group commit stores, and (roughly) the most events: one transaction stays
 * bounded in time and in the locks it holds, and its one INSERT within PostgreSQL's 65,535 bind
 * parameters (7 per event). What does not fit waits for the next batch; an append is never split.
 */
export const MAX_BATCH_APPENDS = 2_000
export const MAX_BATCH_EVENTS = 8_000

/** Tool events write their call's row as they are checked: an append of several with one keeps its own transaction. */
const TOOL_EVENTS: ReadonlySet<EventType> = new Set(["tool_executing", "tool_completed"])

/** An append waiting for the committer. */
interface Pending {
  readonly threadId: string
  readonly drafts: ReadonlyArray<EventDraft>
  /** Answers its caller; cleared once answered, or once the caller stopped waiting. */
  resume: ((exit: Exit.Exit<ReadonlyArray<StoredEvent>, DatabaseError | LifecycleError>) => void) | undefined
  /** Its caller stopped waiting before the committer took it: it is dropped. */
  abandoned: boolean
}

export class EventLog extends Context.Tag("agent-chat/EventLog")<EventLog, {
  /** This process, as the owner of the runs it starts. */
  readonly owner: string
  /** `body` in one transaction; its events are published after it commits, after `onCommit`. */
  readonly transaction: <A, E, R>(
    body: Effect.Effect<A, E, R>,
    onCommit?: (a: A) => Effect.Effect<void>
  ) => Effect.Effect<A, E | DatabaseError, R>
  /**
   * Stores drafts as the thread's next events, if the run lifecycle allows every one of them, else none.
   * Inside a transaction it joins it; outside one it is group-committed (see above). A caller interrupted
   * while it waits only stops waiting: its events are stored all the same unless the committer had not
   * reached them yet.
   */
  readonly append: (
    threadId: string,
    drafts: ReadonlyArray<EventDraft>
  ) => Effect.Effect<ReadonlyArray<StoredEvent>, DatabaseError | LifecycleError>
  /** Starts a run owned by this process, with `agent_started`; None when the thread has a run already. */
  readonly startRun: (
    input: { readonly threadId: string; readonly messageId: string; readonly agent: string }
  ) => Effect.Effect<Option.Option<string>, DatabaseError | LifecycleError>
  /** Queues a stored message of the thread; its run starts with `startQueued`, after those queued before it. */
  readonly enqueue: (threadId: string, messageId: string) => Effect.Effect<void, DatabaseError | LifecycleError>
  /**
   * Starts the run of the thread's first queued message, owned by this process, taking it off the queue
   * in the same transaction, under the thread's lock; None when nothing is queued or a run is active.
   */
  readonly startQueued: (
    input: { readonly threadId: string; readonly agent: string }
  ) => Effect.Effect<Option.Option<QueuedStart>, DatabaseError | LifecycleError>
  /** Whether the thread has queued messages: a plain read, outside the thread's lock. */
  readonly hasQueued: (threadId: string) => Effect.Effect<boolean, DatabaseError>
  /** Threads with queued messages and no active run: their next run is due. */
  readonly idleQueues: Effect.Effect<ReadonlyArray<string>, DatabaseError>
  readonly activeRun: (threadId: string) => Effect.Effect<Option.Option<RunRecord>, DatabaseError>
  /**
   * Ends a running run (its open tool calls closed first); false when it had already ended (unless with
   * this very terminal: an earlier attempt committed it and lost the answer), or, with
   * `onlyIfLeaseExpired`, when its lease has not run out after all (its owner renewed it meanwhile).
   */
  readonly endRun: (
    threadId: string,
    runId: string,
    terminal: Terminal,
    onlyIfLeaseExpired?: boolean
  ) => Effect.Effect<boolean, DatabaseError>
  readonly findRun: (runId: string) => Effect.Effect<Option.Option<RunRecord>, DatabaseError>
  readonly read: (
    threadId: string,
    afterSeq: number,
    limit: number
  ) => Effect.Effect<ReadonlyArray<StoredEvent>, DatabaseError>
  readonly head: (threadId: string) => Effect.Effect<Option.Option<number>, DatabaseError>
  /** The thread's conversation up to `uptoSeq`, newest first (see EventStore.conversation). */
  readonly conversation: (
    threadId: string,
    uptoSeq: number,
    limit: number
  ) => Effect.Effect<ReadonlyArray<StoredEvent>, DatabaseError>
  /** Every event stored from now on, on any node, until the scope closes. */
  readonly live: Effect.Effect<Queue.Dequeue<BrokerMessage>, never, Scope.Scope>
  readonly renewLeases: (runIds: ReadonlyArray<string>) => Effect.Effect<void, DatabaseError>
  readonly expiredRuns: Effect.Effect<ReadonlyArray<RunRef>, DatabaseError>
}>() {}

const make = Effect.gen(function*() {
  const store = yield* EventStore
  const broker = yield* Broker
  const { runLease } = yield* AppConfig
  const owner = `${hostname()}/${process.pid}/${randomUUID().slice(0, 8)}`

  const publish = (events: ReadonlyArray<StoredEvent>) => broker.publish(events.map(toLive))

  /** The events of drafts given seqs from `first`. `lastId` names the last. */
  const toEvents = (
    threadId: string,
    drafts: ReadonlyArray<EventDraft>,
    first: number,
    now: number,
    lastId?: string
  ) => {
    const timestamp = new Date(now).toISOString()
    return drafts.map((d, i): StoredEvent => ({
      event_id: i === drafts.length - 1 && lastId !== undefined ? lastId : randomUUID(),
      thread_id: threadId,
      run_id: d.run_id,
      seq: first + i,
      timestamp,
      event_type: d.event_type,
      data: d.data
    }))
  }

  /** Stores drafts with the thread's next seqs, published on commit; no lifecycle check. `lastId` names the last. */
  const storeDrafts = (
    threadId: string,
    drafts: ReadonlyArray<EventDraft>,
    first: number,
    now: number,
    lastId?: string
  ) =>
    Effect.gen(function*() {
      const events = toEvents(threadId, drafts, first, now, lastId)
      yield* store.insertEvents(events)
      yield* store.afterCommit(publish(events))
      return events
    })

  const refuse = (threadId: string, d: EventDraft, reason: LifecycleReason) =>
    Effect.fail(new LifecycleError({ threadId, runId: d.run_id, eventType: d.event_type, reason }))

  /**
   * What the run lifecycle says of one draft, given its run as stored (undefined when there is none):
   * undefined when it may be stored, as far as the run's row tells (a tool event's call row is `check`'s).
   */
  const verdict = (threadId: string, d: EventDraft, run: RunRecord | undefined): LifecycleReason | undefined => {
    if (THREAD_EVENTS.has(d.event_type)) return d.run_id === null ? undefined : "reserved_event"
    if (d.run_id === null) return "missing_run_id"
    if (RESERVED.has(d.event_type)) return "reserved_event"
    if (run === undefined) return "unknown_run"
    if (run.threadId !== threadId) return "wrong_thread"
    if (run.status !== "running") return "run_ended"
    if (run.owner !== owner) return "not_owner"
    return undefined
  }

  /**
   * Checks one draft against its run's state, opening or closing its tool call. Nothing else is
   * written, and nothing at all when the draft is refused: a refused append of one draft leaves no trace.
   */
  const check = (
    threadId: string,
    d: EventDraft,
    runs: Map<string, RunRecord>,
    now: Date
  ): Effect.Effect<void, LifecycleError | DatabaseError> => {
    const known = d.run_id === null ? undefined : runs.get(d.run_id)
    // Read only for a draft whose verdict turns on its run: one that would be refused as of an unknown run.
    if (known === undefined && d.run_id !== null && verdict(threadId, d, undefined) === "unknown_run") {
      const runId = d.run_id
      return Effect.flatMap(store.run(runId), (found) => {
        if (Option.isSome(found)) runs.set(runId, found.value)
        return checked(threadId, d, Option.getOrUndefined(found), now)
      })
    }
    return checked(threadId, d, known, now)
  }

  /** The verdict, then the tool call's row for a tool event. */
  const checked = (
    threadId: string,
    d: EventDraft,
    run: RunRecord | undefined,
    now: Date
  ): Effect.Effect<void, LifecycleError | DatabaseError> => {
    const reason = verdict(threadId, d, run)
    if (reason !== undefined) return refuse(threadId, d, reason)
    if (d.event_type === "tool_executing") {
      return Effect.flatMap(
        store.openTool(d.run_id!, d.data.tool_call_id, d.data.tool, now),
        (opened) => opened ? Effect.void : refuse(threadId, d, "tool_call_reused")
      )
    }
    if (d.event_type === "tool_completed") {
      return Effect.flatMap(
        store.closeTool(d.run_id!, d.data.tool_call_id, d.data.tool),
        (closed) => closed ? Effect.void : refuse(threadId, d, "tool_call_not_open")
      )
    }
    return Effect.void
  }

  /**
   * Checks the drafts of one append of a batch, whose runs were all read: the refusal of the first
   * draft refused, or undefined. Only tool events need the database; the rest is checked here at once.
   */
  const checkAppend = (
    p: Pending,
    runs: Map<string, RunRecord>,
    now: Date
  ): Effect.Effect<LifecycleError | undefined, DatabaseError> => {
    let tools = false
    for (const d of p.drafts) {
      const reason = verdict(p.threadId, d, d.run_id === null ? undefined : runs.get(d.run_id))
      if (reason !== undefined) {
        return Effect.succeed(
          new LifecycleError({ threadId: p.threadId, runId: d.run_id, eventType: d.event_type, reason })
        )
      }
      if (TOOL_EVENTS.has(d.event_type)) tools = true
    }
    if (!tools) return Effect.succeed(undefined)
    return Effect.forEach(p.drafts, (d) => checked(p.threadId, d, runs.get(d.run_id!), now), { discard: true }).pipe(
      Effect.as(undefined),
      Effect.catchTag("LifecycleError", Effect.succeed)
    )
  }

  /** An append in its own transaction, or the caller's. */
  const appendAlone = (threadId: string, drafts: ReadonlyArray<EventDraft>) =>
    store.transaction(Effect.gen(function*() {
      // The thread's row is locked first (the store's lock order), so the run checks below see the
      // latest state: no other writer can end a run of this thread until this transaction is over.
      const first = yield* store.allocate(threadId, drafts.length)
      if (Option.isNone(first)) return yield* refuse(threadId, drafts[0]!, "unknown_thread")
      const now = yield* Clock.currentTimeMillis
      const runs = new Map<string, RunRecord>()
      for (const d of drafts) yield* check(threadId, d, runs, new Date(now))
      return yield* storeDrafts(threadId, drafts, first.value, now)
    }))

  /**
   * The appends waiting for the committer, in submission order, and the committer's wake-up when it
   * waits for one. Plain data, not a Queue and a Deferred per append: an append is a delta of a
   * streaming run, and each Effect structure on its way costs every delta of every run.
   */
  let queued: Array<Pending> = []
  let wake: (() => void) | undefined
  let closed = false

  /** Answers an append's caller, once (a caller that stopped waiting ignores it). */
  const answer = (p: Pending, exit: Exit.Exit<ReadonlyArray<StoredEvent>, DatabaseError | LifecycleError>) => {
    const resume = p.resume
    p.resume = undefined
    resume?.(exit)
  }

  /**
   * Stores a batch of appends in one transaction: each checked in turn, the refused ones failed alone,
   * the others stored and published together. A database failure, or a commit that may not have
   * happened, fails every append not refused; their callers see it as they would a failure of their own
   * transaction (an uncertain commit may have stored their events, as it may have before).
   */
  const commitBatch = (batch: ReadonlyArray<Pending>) =>
    Effect.gen(function*() {
      const refused = new Map<Pending, LifecycleError>()
      const stored = yield* store.transaction(Effect.gen(function*() {
        const threadIds = [...new Set(batch.map((p) => p.threadId))]
        // Every thread of the batch locked first, at once, in one order (the store's lock order).
        const known = new Set(yield* store.lockThreads(threadIds))
        const runIds = new Set<string>()
        for (const p of batch) for (const d of p.drafts) if (d.run_id !== null) runIds.add(d.run_id)
        const runs = new Map((yield* store.runs([...runIds])).map((run) => [run.runId, run]))
        const now = yield* Clock.currentTimeMillis
        const date = new Date(now)
        const accepted: Array<Pending> = []
        for (const p of batch) {
          // Dropped if its caller stopped waiting before this point; stored, unanswered, if after.
          if (p.abandoned) continue
          const refusal = known.has(p.threadId)
            ? yield* checkAppend(p, runs, date)
            : new LifecycleError({
              threadId: p.threadId,
              runId: p.drafts[0]!.run_id,
              eventType: p.drafts[0]!.event_type,
              reason: "unknown_thread"
            })
          if (refusal === undefined) accepted.push(p)
          else refused.set(p, refusal)
        }
        const counts = new Map<string, number>()
        for (const p of accepted) counts.set(p.threadId, (counts.get(p.threadId) ?? 0) + p.drafts.length)
        // Seqs only for what was accepted, in submission order: a refusal leaves no gap.
        const next = new Map(yield* store.allocateMany(counts))
        const result = accepted.map((p) => {
          const first = next.get(p.threadId)!
          next.set(p.threadId, first + p.drafts.length)
          return [p, toEvents(p.threadId, p.drafts, first, now)] as const
        })
        yield* store.insertEvents(result.flatMap(([, events]) => events))
        return result
      })).pipe(Effect.either)
      if (stored._tag === "Right") yield* publish(stored.right.flatMap(([, events]) => events))
      for (const p of batch) {
        const refusal = refused.get(p)
        if (refusal !== undefined) answer(p, Exit.fail(refusal))
        else if (stored._tag === "Left") answer(p, Exit.fail(stored.left))
      }
      if (stored._tag === "Right") { for (const [p, events] of stored.right) answer(p, Exit.succeed(events)) }
    }).pipe(
      // Whatever happened, no caller is left waiting (a defect of the store included).
      Effect.catchAllCause((cause) =>
        Effect.sync(() => {
          for (const p of batch) answer(p, Exit.failCause(cause))
        })
      ),
      Effect.uninterruptible
    )

  /** Waits until something is queued. */
  const queuedSome: Effect.Effect<void> = Effect.async<void>((resume) => {
    if (queued.length > 0) return resume(Effect.void)
    wake = () => resume(Effect.void)
    return Effect.sync(() => {
      wake = undefined
    })
  })

  /** The committer's next batch: what is queued (what came while the last batch committed), up to the caps. */
  const nextBatch = Effect.zipRight(
    queuedSome,
    Effect.sync(() => {
      // At least one append, however large; then as many as fit.
      let events = queued[0]!.drafts.length
      let size = 1
      const most = Math.min(queued.length, MAX_BATCH_APPENDS)
      while (size < most && events + queued[size]!.drafts.length <= MAX_BATCH_EVENTS) {
        events += queued[size]!.drafts.length
        size++
      }
      if (size === queued.length) {
        const batch = queued
        queued = []
        return batch
      }
      return queued.splice(0, size)
    })
  )
  // Once the committer has stopped (the layer is closing), whoever still waits is interrupted, not left hanging.
  yield* Effect.addFinalizer(() =>
    Effect.sync(() => {
      closed = true
      const left = queued
      queued = []
      for (const p of left) answer(p, Exit.interrupt(FiberId.none))
    })
  )
  yield* Effect.forkScoped(Effect.forever(Effect.flatMap(nextBatch, commitBatch)))

  /** Queues an append for the committer and waits for its answer. */
  const enqueueAppend = (threadId: string, drafts: ReadonlyArray<EventDraft>) =>
    Effect.async<ReadonlyArray<StoredEvent>, DatabaseError | LifecycleError>((resume) => {
      if (closed) return resume(Effect.interrupt)
      const p: Pending = { threadId, drafts, resume, abandoned: false }
      queued.push(p)
      if (wake !== undefined) {
        const w = wake
        wake = undefined
        w()
      }
      // A caller interrupted while it waits only stops waiting: its append is dropped if the committer has
      // not reached it yet, else stored (as an append interrupted during its commit may have been before).
      return Effect.sync(() => {
        p.abandoned = true
        p.resume = undefined
      })
    })

  const refused = (error: LifecycleError) =>
    Effect.logWarning("event refused by the run lifecycle").pipe(
      Effect.annotateLogs({ thread_id: error.threadId, run_id: error.runId, reason: error.reason })
    )

  /**
   * Untraced: a run appends once per delta, and a span per append (Effect.fn's) cost more than the rest
   * of its way through the committer (measured). The committer's transactions are traced.
   */
  const append = (
    threadId: string,
    drafts: ReadonlyArray<EventDraft>
  ): Effect.Effect<ReadonlyArray<StoredEvent>, DatabaseError | LifecycleError> => {
    if (drafts.length === 0) return Effect.succeed([])
    const withTool = drafts.length > 1 && drafts.some((d) => TOOL_EVENTS.has(d.event_type))
    return Effect.flatMap(
      inTransaction,
      (nested) => nested || withTool ? appendAlone(threadId, drafts) : enqueueAppend(threadId, drafts)
    ).pipe(Effect.tapErrorTag("LifecycleError", refused))
  }

  /** Stores the start of a run, inside a transaction that holds the thread's lock; false when one is active. */
  const begin = (input: { readonly threadId: string; readonly messageId: string; readonly agent: string }) =>
    Effect.gen(function*() {
      const runId = randomUUID()
      const now = yield* Clock.currentTimeMillis
      const inserted = yield* store.insertRun({ ...input, runId, owner, lease: runLease, startedAt: new Date(now) })
      if (!inserted) return Option.none<string>()
      // Seqs are taken only once the run is sure to start: a refused start leaves no gap.
      const first = yield* store.allocate(input.threadId, 1)
      if (Option.isNone(first)) return Option.none<string>()
      const started = draft("agent_started", runId, { agent: input.agent, message_id: input.messageId })
      yield* storeDrafts(input.threadId, [started], first.value, now)
      return Option.some(runId)
    })

  /** Takes the thread's lock (the store's lock order) for an event of that type; refused without the thread. */
  const locked = (threadId: string, eventType: EventType) =>
    Effect.flatMap(store.lockThread(threadId), (found) =>
      found ? Effect.void : Effect.fail(
        new LifecycleError({ threadId, runId: null, eventType, reason: "unknown_thread" })
      ))

  const startRun = Effect.fn("EventLog.startRun")(
    function*(input: { readonly threadId: string; readonly messageId: string; readonly agent: string }) {
      return yield* store.transaction(Effect.gen(function*() {
        yield* locked(input.threadId, "agent_started")
        return yield* begin(input)
      }))
    }
  )

  const enqueue = Effect.fn("EventLog.enqueue")(function*(threadId: string, messageId: string) {
    yield* store.transaction(Effect.gen(function*() {
      yield* locked(threadId, "message_created")
      const now = yield* Clock.currentTimeMillis
      yield* store.enqueue(threadId, messageId, new Date(now))
    }))
  })

  const startQueued = Effect.fn("EventLog.startQueued")(
    function*(input: { readonly threadId: string; readonly agent: string }) {
      return yield* store.transaction(Effect.gen(function*() {
        // The thread's lock first: whoever else would start its next run (another process ending a run,
        // a sweep, a send) waits here, and then finds the message gone or the thread busy.
        yield* locked(input.threadId, "agent_started")
        const head = yield* store.queueHead(input.threadId)
        if (Option.isNone(head)) return Option.none<QueuedStart>()
        const runId = yield* begin({ ...input, messageId: head.value })
        if (Option.isNone(runId)) return Option.none<QueuedStart>()
        if (!(yield* store.dequeue(input.threadId, head.value))) {
          return yield* Effect.die(new Error(`queued message ${head.value} taken by another run`))
        }
        return Option.some<QueuedStart>({ runId: runId.value, messageId: head.value })
      }))
    }
  )

  const endRun = Effect.fn("EventLog.endRun")(function*(
    threadId: string,
    runId: string,
    terminal: Terminal,
    onlyIfLeaseExpired = false
  ) {
    return yield* store.transaction(Effect.gen(function*() {
      yield* store.lockThread(threadId)
      const run = yield* store.run(runId)
      if (Option.isNone(run) || run.value.threadId !== threadId) return false
      if (run.value.status !== "running") {
        // Perhaps this very end, committed by an attempt whose answer was lost: publish it again (a
        // connection that has it already drops it; one that lacks what came before fetches it).
        const last = yield* store.lastRunEvent(threadId, runId)
        if (Option.isSome(last)) yield* store.afterCommit(publish([last.value]))
        // If it is, the end stored is this one: reporting it as another's would misreport how the run ended.
        return Option.exists(last, (event) => event.event_id === terminal.eventId)
      }
      // Checked under the thread's lock, in the transaction that ends the run: a renewal that came after
      // whoever listed the run as expired still saves it.
      if (onlyIfLeaseExpired && !run.value.leaseExpired) return false
      const now = yield* Clock.currentTimeMillis
      const open = yield* store.openTools(runId, true)
      const drafts: Array<EventDraft> = open.map((call) =>
        draft("tool_completed", runId, {
          tool_call_id: call.toolCallId,
          tool: call.tool,
          error: INTERRUPTED,
          duration_ms: Math.max(0, now - call.startedAt)
        })
      )
      drafts.push({ ...terminal.event, run_id: runId })
      const code = terminal.event.event_type === "agent_error" ? terminal.event.data.code : null
      const usage = terminal.event.event_type === "agent_completed" ? terminal.event.data.usage ?? null : null
      yield* store.finishRun(runId, terminal.status, code, new Date(now), usage)
      const first = yield* store.allocate(threadId, drafts.length)
      if (Option.isNone(first)) return false
      yield* storeDrafts(threadId, drafts, first.value, now, terminal.eventId)
      return true
    }))
  })

  return EventLog.of({
    owner,
    transaction: store.transaction,
    append,
    startRun,
    endRun,
    findRun: store.run,
    read: store.read,
    head: store.head,
    conversation: store.conversation,
    live: broker.subscribe,
    renewLeases: (runIds) => store.renewLeases(owner, runIds, runLease),
    expiredRuns: store.expiredRuns,
    enqueue,
    startQueued,
    hasQueued: (threadId) => Effect.map(store.queueHead(threadId), Option.isSome),
    idleQueues: store.idleQueues,
    activeRun: store.activeRun
  })
})

export const EventLogLive: Layer.Layer<EventLog, never, EventStore | Broker | AppConfig> = Layer.scoped(
  EventLog,
  make
)

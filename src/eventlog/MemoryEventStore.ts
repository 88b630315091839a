/**
 * The event store in memory, for unit and property tests of everything
 * above it. Transactions are serialised and roll back on failure, like the
 * database's; `faults` lets a test lose the "database": every operation
 * fails while `down`, and `nextCommit` fails one commit before or after it
 * applied (the second is a commit whose answer was lost).
 */
import { Clock, Duration, Effect, Exit, Layer, Option } from "effect"
import { afterCommit, withCommitHooks } from "../database/Transaction.ts"
import { DatabaseError } from "../domain/Errors.ts"
import type { StoredEvent } from "../protocol/Events.ts"
import { CONVERSATION_EVENTS, EventStore, type RunRecord } from "./EventStore.ts"

export interface StoreFaults {
  down: boolean
  nextCommit: "before" | "after" | undefined
}

interface RunRow {
  record: Omit<RunRecord, "leaseExpired">
  leaseUntil: number
}

interface ToolRow {
  readonly tool: string
  readonly startedAt: number
  completed: boolean
}

interface State {
  readonly heads: Map<string, number>
  readonly events: Map<string, Array<StoredEvent>>
  readonly runs: Map<string, RunRow>
  readonly tools: Map<string, Map<string, ToolRow>>
  /** Queued messages of every thread, in the order they were queued. */
  readonly queue: Array<{ readonly threadId: string; readonly messageId: string }>
}

const copy = (state: State): State => ({
  heads: new Map(state.heads),
  events: new Map([...state.events].map(([k, v]) => [k, [...v]])),
  runs: new Map([...state.runs].map(([k, v]) => [k, { ...v }])),
  tools: new Map([...state.tools].map(([k, v]) => [k, new Map([...v].map(([id, t]) => [id, { ...t }]))])),
  queue: [...state.queue]
})

export interface MemoryStore {
  readonly store: EventStore["Type"]
  readonly faults: StoreFaults
  /** Threads are made by the threads repository in production; here a test makes them. */
  readonly createThread: (threadId: string) => void
  readonly runs: () => ReadonlyArray<Omit<RunRecord, "leaseExpired">>
  readonly events: (threadId: string) => ReadonlyArray<StoredEvent>
  /** The thread's queued messages, first first. */
  readonly queued: (threadId: string) => ReadonlyArray<string>
}

export const makeMemoryStore = Effect.gen(function*() {
  let state: State = { heads: new Map(), events: new Map(), runs: new Map(), tools: new Map(), queue: [] }
  const faults: StoreFaults = { down: false, nextCommit: undefined }
  const lock = yield* Effect.makeSemaphore(1)
  const lost = (what: string) => new DatabaseError({ reason: what, cause: new Error("the database is lost") })
  const op = <A>(what: string, f: () => A) =>
    Effect.suspend(() => faults.down ? Effect.fail(lost(what)) : Effect.succeed(f()))

  const commit = <A, E, R>(body: Effect.Effect<A, E, R>) =>
    lock.withPermits(1)(Effect.gen(function*() {
      if (faults.down) return yield* Effect.fail(lost("begin a transaction"))
      const before = copy(state)
      const exit = yield* Effect.exit(body)
      const failAt = faults.nextCommit
      if (Exit.isFailure(exit) || faults.down || failAt === "before") {
        state = before
        if (Exit.isSuccess(exit)) {
          faults.nextCommit = undefined
          return yield* Effect.fail(new DatabaseError({ reason: "commit", uncertain: true }))
        }
        return yield* exit
      }
      if (failAt === "after") {
        faults.nextCommit = undefined
        return yield* Effect.fail(new DatabaseError({ reason: "commit", uncertain: true }))
      }
      return exit.value
    }))

  const running = (threadId: string) =>
    [...state.runs.values()].find((row) => row.record.threadId === threadId && row.record.status === "running")

  const tools = (runId: string) => {
    let map = state.tools.get(runId)
    if (map === undefined) state.tools.set(runId, map = new Map())
    return map
  }

  const store = EventStore.of({
    transaction: (body, onCommit) => withCommitHooks(body, commit, onCommit),
    afterCommit,
    lockThread: (threadId) => op("lock thread", () => state.heads.has(threadId)),
    allocate: (threadId, count) =>
      op("allocate seqs", () => {
        const head = state.heads.get(threadId)
        if (head === undefined) return Option.none()
        state.heads.set(threadId, head + count)
        return Option.some(head + 1)
      }),
    lockThreads: (threadIds) => op("lock threads", () => threadIds.filter((id) => state.heads.has(id)).sort()),
    allocateMany: (counts) =>
      op("allocate seqs", () => {
        const firsts = new Map<string, number>()
        for (const [threadId, count] of counts) {
          const head = state.heads.get(threadId)
          if (head === undefined) continue
          state.heads.set(threadId, head + count)
          firsts.set(threadId, head + 1)
        }
        return firsts
      }),
    insertEvents: (events) =>
      op("insert events", () => {
        for (const event of events) state.events.get(event.thread_id)?.push(event)
      }),
    run: (runId) =>
      Effect.flatMap(Clock.currentTimeMillis, (now) =>
        op("read run", () =>
          Option.map(
            Option.fromNullable(state.runs.get(runId)),
            (r): RunRecord => ({ ...r.record, leaseExpired: r.leaseUntil < now })
          ))),
    runs: (runIds) =>
      Effect.flatMap(Clock.currentTimeMillis, (now) =>
        op("read runs", () =>
          runIds.flatMap((runId) => {
            const row = state.runs.get(runId)
            return row === undefined ? [] : [{ ...row.record, leaseExpired: row.leaseUntil < now }]
          }))),
    insertRun: (run) =>
      Effect.flatMap(Clock.currentTimeMillis, (now) =>
        op("insert run", () => {
          if (running(run.threadId) !== undefined) return false
          // As the database's one-run-per-message index: a bug, not an answer.
          if ([...state.runs.values()].some((row) => row.record.messageId === run.messageId)) {
            throw new Error(`a second run of message ${run.messageId}`)
          }
          const { agent: _agent, lease, startedAt: _startedAt, ...record } = run
          state.runs.set(run.runId, {
            record: { ...record, status: "running", usage: null },
            leaseUntil: now + Duration.toMillis(lease)
          })
          return true
        })),
    finishRun: (runId, status, _errorCode, _at, usage) =>
      op("finish run", () => {
        const row = state.runs.get(runId)
        if (row !== undefined) row.record = { ...row.record, status, usage }
      }),
    openTool: (runId, toolCallId, tool, at) =>
      op("open tool call", () => {
        const map = tools(runId)
        if (map.has(toolCallId)) return false
        map.set(toolCallId, { tool, startedAt: at.getTime(), completed: false })
        return true
      }),
    closeTool: (runId, toolCallId, tool) =>
      op("close tool call", () => {
        const row = tools(runId).get(toolCallId)
        if (row === undefined || row.completed || row.tool !== tool) return false
        row.completed = true
        return true
      }),
    openTools: (runId, close) =>
      op(
        "read open tool calls",
        () =>
          [...tools(runId)].filter(([, row]) => !row.completed).map(([toolCallId, row]) => {
            if (close) row.completed = true
            return { toolCallId, tool: row.tool, startedAt: row.startedAt }
          })
      ),
    enqueue: (threadId, messageId) =>
      op("queue a message", () => {
        state.queue.push({ threadId, messageId })
      }),
    dequeue: (threadId, messageId) =>
      op("dequeue a message", () => {
        const at = state.queue.findIndex((q) => q.threadId === threadId && q.messageId === messageId)
        if (at >= 0) state.queue.splice(at, 1)
        return at >= 0
      }),
    read: (threadId, afterSeq, limit) =>
      op("read events", () => (state.events.get(threadId) ?? []).filter((e) => e.seq > afterSeq).slice(0, limit)),
    conversation: (threadId, uptoSeq, limit) =>
      op("read the conversation", () =>
        (state.events.get(threadId) ?? [])
          .filter((e) => e.seq <= uptoSeq && CONVERSATION_EVENTS.includes(e.event_type))
          .reverse()
          .slice(0, limit)),
    head: (threadId) => op("read head seq", () => Option.fromNullable(state.heads.get(threadId))),
    lastRunEvent: (threadId, runId) =>
      op("read the last event of a run", () => {
        const events = state.events.get(threadId) ?? []
        for (let i = events.length - 1; i >= 0; i--) if (events[i]!.run_id === runId) return Option.some(events[i]!)
        return Option.none()
      }),
    renewLeases: (owner, runIds, lease) =>
      Effect.flatMap(Clock.currentTimeMillis, (now) =>
        op("renew leases", () => {
          for (const runId of runIds) {
            const row = state.runs.get(runId)
            if (row?.record.owner === owner && row.record.status === "running") {
              row.leaseUntil = now + Duration.toMillis(lease)
            }
          }
        })),
    expiredRuns: Effect.flatMap(Clock.currentTimeMillis, (now) =>
      op("list expired runs", () =>
        [...state.runs.values()]
          .filter((row) => row.record.status === "running" && row.leaseUntil < now)
          .map((row) => ({ runId: row.record.runId, threadId: row.record.threadId })))),
    activeRun: (threadId) =>
      Effect.flatMap(Clock.currentTimeMillis, (now) =>
        op("read the active run", () =>
          Option.map(
            Option.fromNullable(running(threadId)),
            (r): RunRecord => ({ ...r.record, leaseExpired: r.leaseUntil < now })
          ))),
    queueHead: (threadId) =>
      op(
        "read the message queue",
        () => Option.fromNullable(state.queue.find((q) => q.threadId === threadId)?.messageId)
      ),
    idleQueues: op(
      "list idle queues",
      () => [...new Set(state.queue.map((q) => q.threadId))].filter((threadId) => running(threadId) === undefined)
    )
  })

  return {
    store,
    faults,
    createThread: (threadId) => {
      state.heads.set(threadId, state.heads.get(threadId) ?? 0)
      if (!state.events.has(threadId)) state.events.set(threadId, [])
    },
    runs: () => [...state.runs.values()].map((row) => row.record),
    events: (threadId) => state.events.get(threadId) ?? [],
    queued: (threadId) => state.queue.filter((q) => q.threadId === threadId).map((q) => q.messageId)
  } satisfies MemoryStore
})

export const MemoryEventStoreLive: Layer.Layer<EventStore> = Layer.effect(
  EventStore,
  Effect.map(makeMemoryStore, (memory) => memory.store)
)

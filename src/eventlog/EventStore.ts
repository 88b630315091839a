/**
 * EventStore: where the event log keeps events, runs and their tool calls.
 * It only stores; the rules of what may be stored live in EventLog, once,
 * whichever store is underneath (PostgreSQL, or memory for unit tests).
 *
 * Lock order, so concurrent writers never deadlock: a thread's row first
 * (`lockThread` or `allocate`), then its runs, then its queued messages.
 * A transaction that writes to several threads (the event log's group
 * commit of appends) locks all their rows at once, first, with
 * `lockThreads`, which takes them in the database's order of their ids:
 * two such transactions (of two processes) meet each other's rows in the
 * same order, and one that locks a single thread holds no other thread's
 * row, so no cycle of waits can form. Its `allocateMany` then updates rows
 * it holds already.
 */
import { Context, type Duration, type Effect, type Option } from "effect"
import type { DatabaseError } from "../domain/Errors.ts"
import type { EventType, StoredEvent } from "../protocol/Events.ts"

/** The event types a conversation's history is made of (not the deltas and thoughts of each answer). */
export const CONVERSATION_EVENTS: ReadonlyArray<EventType> = [
  "message_created",
  "agent_started",
  "tool_executing",
  "tool_completed",
  "agent_completed"
]

export interface RunUsage {
  readonly input_tokens: number
  readonly output_tokens: number
}

export type RunStatus = "running" | "completed" | "failed" | "cancelled"
export type EndStatus = Exclude<RunStatus, "running">

export interface RunRecord {
  readonly runId: string
  readonly threadId: string
  readonly messageId: string
  readonly status: RunStatus
  /** The process that runs it; null for runs of an earlier version. */
  readonly owner: string | null
  /** The tokens its model requests used, once it has completed, when the provider reported them. */
  readonly usage: RunUsage | null
  /** Whether its lease has run out (by the store's clock, as it reads the run): its owner may be gone. */
  readonly leaseExpired: boolean
}

export interface RunRef {
  readonly runId: string
  readonly threadId: string
}

export interface OpenToolCall {
  readonly toolCallId: string
  readonly tool: string
  /** Epoch ms. */
  readonly startedAt: number
}

export interface NewRun {
  readonly runId: string
  readonly threadId: string
  readonly messageId: string
  readonly agent: string
  readonly owner: string
  readonly lease: Duration.Duration
  readonly startedAt: Date
}

export class EventStore extends Context.Tag("agent-chat/EventStore")<EventStore, {
  /**
   * `body` in one transaction (joining the current one, if any); `onCommit`, then whatever the body
   * registered with `afterCommit`, run once it has committed.
   */
  readonly transaction: <A, E, R>(
    body: Effect.Effect<A, E, R>,
    onCommit?: (a: A) => Effect.Effect<void>
  ) => Effect.Effect<A, E | DatabaseError, R>
  /** Runs `effect` once the current transaction commits; at once outside one. */
  readonly afterCommit: (effect: Effect.Effect<void>) => Effect.Effect<void>

  // Inside a transaction:
  /** Locks the thread's row; false when there is no such thread. */
  readonly lockThread: (threadId: string) => Effect.Effect<boolean, DatabaseError>
  /** Takes the next `count` seqs of a thread (locking it) and returns the first; None without the thread. */
  readonly allocate: (threadId: string, count: number) => Effect.Effect<Option.Option<number>, DatabaseError>
  /**
   * Locks the rows of these threads, in the order of their ids (see the lock order above); returns
   * those that exist.
   */
  readonly lockThreads: (threadIds: ReadonlyArray<string>) => Effect.Effect<ReadonlyArray<string>, DatabaseError>
  /**
   * Takes the next `count` seqs of each thread, in one statement, for threads locked already by
   * `lockThreads`; returns the first seq of each, and lacks the threads that do not exist.
   */
  readonly allocateMany: (
    counts: ReadonlyMap<string, number>
  ) => Effect.Effect<ReadonlyMap<string, number>, DatabaseError>
  readonly insertEvents: (events: ReadonlyArray<StoredEvent>) => Effect.Effect<void, DatabaseError>
  readonly run: (runId: string) => Effect.Effect<Option.Option<RunRecord>, DatabaseError>
  /** The runs of these ids that exist, in one read. */
  readonly runs: (runIds: ReadonlyArray<string>) => Effect.Effect<ReadonlyArray<RunRecord>, DatabaseError>
  /** False when the thread already has a running run. */
  readonly insertRun: (run: NewRun) => Effect.Effect<boolean, DatabaseError>
  readonly finishRun: (
    runId: string,
    status: EndStatus,
    errorCode: string | null,
    at: Date,
    usage: RunUsage | null
  ) => Effect.Effect<void, DatabaseError>
  /** False when the run has used this tool call id already. */
  readonly openTool: (
    runId: string,
    toolCallId: string,
    tool: string,
    at: Date
  ) => Effect.Effect<boolean, DatabaseError>
  /** False when no open call of that id and tool exists. */
  readonly closeTool: (runId: string, toolCallId: string, tool: string) => Effect.Effect<boolean, DatabaseError>
  /** The run's open tool calls in the order they were opened; closes them all when `close` is set. */
  readonly openTools: (runId: string, close: boolean) => Effect.Effect<ReadonlyArray<OpenToolCall>, DatabaseError>
  /** Queues a stored message of the thread, after those queued before it. */
  readonly enqueue: (threadId: string, messageId: string, at: Date) => Effect.Effect<void, DatabaseError>
  /** Takes a message off its thread's queue; false when it was not on it. */
  readonly dequeue: (threadId: string, messageId: string) => Effect.Effect<boolean, DatabaseError>

  // Anywhere:
  readonly read: (
    threadId: string,
    afterSeq: number,
    limit: number
  ) => Effect.Effect<ReadonlyArray<StoredEvent>, DatabaseError>
  readonly head: (threadId: string) => Effect.Effect<Option.Option<number>, DatabaseError>
  /**
   * The newest `limit` events of a thread that make its conversation (messages, run starts, tool calls
   * and their results, answers), up to `uptoSeq`, newest first: what a model request's history is read from.
   */
  readonly conversation: (
    threadId: string,
    uptoSeq: number,
    limit: number
  ) => Effect.Effect<ReadonlyArray<StoredEvent>, DatabaseError>
  /** The last stored event of a run (its terminal event once it has ended). */
  readonly lastRunEvent: (
    threadId: string,
    runId: string
  ) => Effect.Effect<Option.Option<StoredEvent>, DatabaseError>
  /** Extends the leases of these runs of `owner` that are still running. */
  readonly renewLeases: (
    owner: string,
    runIds: ReadonlyArray<string>,
    lease: Duration.Duration
  ) => Effect.Effect<void, DatabaseError>
  /** Running runs whose lease has expired (by the store's clock), or that have none. */
  readonly expiredRuns: Effect.Effect<ReadonlyArray<RunRef>, DatabaseError>
  /** The thread's running run, if it has one. */
  readonly activeRun: (threadId: string) => Effect.Effect<Option.Option<RunRecord>, DatabaseError>
  /** The thread's first queued message, if any. */
  readonly queueHead: (threadId: string) => Effect.Effect<Option.Option<string>, DatabaseError>
  /** Threads with queued messages and no running run. */
  readonly idleQueues: Effect.Effect<ReadonlyArray<string>, DatabaseError>
}>() {}

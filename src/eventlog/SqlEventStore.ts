/**
 * The event store on PostgreSQL (a server or the embedded PGlite). Leases
 * are reckoned by the database's clock, the one clock every process shares.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import { Duration, Effect, Layer, Option } from "effect"
import { afterCommit, transaction } from "../database/Transaction.ts"
import { DatabaseError } from "../domain/Errors.ts"
import type { EventType, StoredEvent } from "../protocol/Events.ts"
import {
  CONVERSATION_EVENTS,
  EventStore,
  type OpenToolCall,
  type RunRecord,
  type RunRef,
  type RunStatus
} from "./EventStore.ts"

interface EventRow {
  readonly id: string
  readonly thread_id: string
  readonly run_id: string | null
  readonly seq: number
  readonly created_at: Date
  readonly event_type: EventType
  readonly data: unknown
}

const toStored = (row: EventRow): StoredEvent => ({
  event_id: row.id,
  thread_id: row.thread_id,
  run_id: row.run_id,
  seq: row.seq,
  timestamp: row.created_at.toISOString(),
  event_type: row.event_type,
  data: row.data
})

interface RunRow {
  readonly id: string
  readonly thread_id: string
  readonly message_id: string
  readonly status: RunStatus
  readonly owner: string | null
  readonly lease_expired: boolean
  readonly input_tokens: number | null
  readonly output_tokens: number | null
}

const toRun = (r: RunRow): RunRecord => ({
  runId: r.id,
  threadId: r.thread_id,
  messageId: r.message_id,
  status: r.status,
  owner: r.owner,
  leaseExpired: r.lease_expired,
  usage: r.input_tokens === null || r.output_tokens === null
    ? null
    : { input_tokens: Number(r.input_tokens), output_tokens: Number(r.output_tokens) }
})

const failed = (reason: string) => (cause: SqlError) => new DatabaseError({ reason, cause })

const seconds = (lease: Duration.Duration) => Duration.toMillis(lease) / 1000

const make = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const provide = Effect.provideService(SqlClient.SqlClient, sql)

  const eventColumns = sql`id, thread_id, run_id, seq, created_at, event_type, data`
  const runColumns = sql`id, thread_id, message_id, status, owner, input_tokens, output_tokens,
    (lease_expires_at IS NULL OR lease_expires_at < now()) AS lease_expired`

  return EventStore.of({
    transaction: (body, onCommit) => provide(transaction(body, onCommit)),
    afterCommit,
    lockThread: (threadId) =>
      sql`SELECT 1 AS one FROM threads WHERE id = ${threadId} FOR UPDATE`.pipe(
        Effect.map((rows) => rows.length > 0),
        Effect.mapError(failed("lock thread"))
      ),
    allocate: (threadId, count) =>
      sql<{ head_seq: number }>`
        UPDATE threads SET head_seq = head_seq + ${count} WHERE id = ${threadId} RETURNING head_seq`.pipe(
        Effect.map((rows) => Option.map(Option.fromNullable(rows[0]), (row) => row.head_seq - count + 1)),
        Effect.mapError(failed("allocate seqs"))
      ),
    lockThreads: (threadIds) =>
      threadIds.length === 0 ? Effect.succeed([]) : sql<{ id: string }>`
        SELECT id FROM threads WHERE ${sql.in("id", threadIds)} ORDER BY id FOR UPDATE`.pipe(
        // The sort runs below the row locks, so the rows are locked in this order.
        Effect.map((rows) => rows.map((row) => row.id)),
        Effect.mapError(failed("lock threads"))
      ),
    allocateMany: (counts) =>
      counts.size === 0 ? Effect.succeed(new Map()) : sql<{ id: string; head_seq: number }>`
        UPDATE threads t SET head_seq = t.head_seq + v.n
        FROM (VALUES ${sql.csv([...counts].map(([id, n]) => sql`(${id}::text, ${n}::int)`))}) AS v (id, n)
        WHERE t.id = v.id RETURNING t.id, t.head_seq`.pipe(
        Effect.map((rows) => new Map(rows.map((row) => [row.id, Number(row.head_seq) - counts.get(row.id)! + 1]))),
        Effect.mapError(failed("allocate seqs"))
      ),
    insertEvents: (events) =>
      events.length === 0 ? Effect.void : sql`INSERT INTO events ${
        sql.insert(events.map((e) => ({
          thread_id: e.thread_id,
          seq: e.seq,
          id: e.event_id,
          event_type: e.event_type,
          run_id: e.run_id,
          created_at: new Date(e.timestamp),
          data: JSON.stringify(e.data)
        })))
      }`.pipe(Effect.asVoid, Effect.mapError(failed("insert events"))),
    run: (runId) =>
      sql<RunRow>`SELECT ${runColumns} FROM runs WHERE id = ${runId}`.pipe(
        Effect.map((rows) => Option.map(Option.fromNullable(rows[0]), toRun)),
        Effect.mapError(failed("read run"))
      ),
    runs: (runIds) =>
      runIds.length === 0 ? Effect.succeed([]) : sql<RunRow>`
        SELECT ${runColumns} FROM runs WHERE ${sql.in("id", runIds)}`.pipe(
        Effect.map((rows) => rows.map(toRun)),
        Effect.mapError(failed("read runs"))
      ),
    insertRun: (run) =>
      sql`INSERT INTO runs (id, thread_id, message_id, agent, status, started_at, owner, lease_expires_at)
        VALUES (${run.runId}, ${run.threadId}, ${run.messageId}, ${run.agent}, 'running', ${run.startedAt},
          ${run.owner}, now() + make_interval(secs => ${seconds(run.lease)}))
        ON CONFLICT (thread_id) WHERE status = 'running' DO NOTHING
        RETURNING id`.pipe(Effect.map((rows) => rows.length > 0), Effect.mapError(failed("insert run"))),
    finishRun: (runId, status, errorCode, at, usage) =>
      sql`UPDATE runs SET status = ${status}, error_code = ${errorCode}, ended_at = ${at},
        input_tokens = ${usage?.input_tokens ?? null}, output_tokens = ${usage?.output_tokens ?? null}
        WHERE id = ${runId}`.pipe(
        Effect.asVoid,
        Effect.mapError(failed("finish run"))
      ),
    openTool: (runId, toolCallId, tool, at) =>
      sql`INSERT INTO run_tool_calls (run_id, tool_call_id, tool, started_at)
        VALUES (${runId}, ${toolCallId}, ${tool}, ${at}) ON CONFLICT DO NOTHING RETURNING 1 AS one`.pipe(
        Effect.map((rows) => rows.length > 0),
        Effect.mapError(failed("open tool call"))
      ),
    closeTool: (runId, toolCallId, tool) =>
      sql`UPDATE run_tool_calls SET completed = true
        WHERE run_id = ${runId} AND tool_call_id = ${toolCallId} AND tool = ${tool} AND NOT completed
        RETURNING 1 AS one`.pipe(Effect.map((rows) => rows.length > 0), Effect.mapError(failed("close tool call"))),
    openTools: (runId, close) =>
      (close
        ? sql<{ tool_call_id: string; tool: string; started_at: Date }>`
          UPDATE run_tool_calls SET completed = true WHERE run_id = ${runId} AND NOT completed
          RETURNING tool_call_id, tool, started_at`
        : sql<{ tool_call_id: string; tool: string; started_at: Date }>`
          SELECT tool_call_id, tool, started_at FROM run_tool_calls WHERE run_id = ${runId} AND NOT completed`).pipe(
          Effect.map((rows) =>
            rows.map((r): OpenToolCall => ({
              toolCallId: r.tool_call_id,
              tool: r.tool,
              startedAt: r.started_at.getTime()
            })).sort((a, b) => a.startedAt - b.startedAt || a.toolCallId.localeCompare(b.toolCallId))
          ),
          Effect.mapError(failed("read open tool calls"))
        ),
    enqueue: (threadId, messageId, at) =>
      sql`INSERT INTO message_queue (message_id, thread_id, queued_at) VALUES (${messageId}, ${threadId}, ${at})`.pipe(
        Effect.asVoid,
        Effect.mapError(failed("queue a message"))
      ),
    dequeue: (threadId, messageId) =>
      sql`DELETE FROM message_queue WHERE message_id = ${messageId} AND thread_id = ${threadId}
        RETURNING 1 AS one`.pipe(Effect.map((rows) => rows.length > 0), Effect.mapError(failed("dequeue a message"))),
    read: (threadId, afterSeq, limit) =>
      sql<EventRow>`SELECT ${eventColumns} FROM events
        WHERE thread_id = ${threadId} AND seq > ${afterSeq} ORDER BY seq LIMIT ${limit}`.pipe(
        Effect.map((rows) => rows.map(toStored)),
        Effect.mapError(failed("read events"))
      ),
    conversation: (threadId, uptoSeq, limit) =>
      sql<EventRow>`SELECT ${eventColumns} FROM events
        WHERE thread_id = ${threadId} AND seq <= ${uptoSeq} AND event_type IN ${sql.in(CONVERSATION_EVENTS)}
        ORDER BY seq DESC LIMIT ${limit}`.pipe(
        Effect.map((rows) => rows.map(toStored)),
        Effect.mapError(failed("read the conversation"))
      ),
    head: (threadId) =>
      sql<{ head_seq: number }>`SELECT head_seq FROM threads WHERE id = ${threadId}`.pipe(
        Effect.map((rows) => Option.fromNullable(rows[0]?.head_seq)),
        Effect.mapError(failed("read head seq"))
      ),
    lastRunEvent: (threadId, runId) =>
      sql<EventRow>`SELECT ${eventColumns} FROM events
        WHERE thread_id = ${threadId} AND run_id = ${runId} ORDER BY seq DESC LIMIT 1`.pipe(
        Effect.map((rows) => Option.map(Option.fromNullable(rows[0]), toStored)),
        Effect.mapError(failed("read the last event of a run"))
      ),
    renewLeases: (owner, runIds, lease) =>
      runIds.length === 0 ? Effect.void : sql`UPDATE runs
        SET lease_expires_at = now() + make_interval(secs => ${seconds(lease)})
        WHERE ${sql.in("id", runIds)} AND owner = ${owner} AND status = 'running'`.pipe(
        Effect.asVoid,
        Effect.mapError(failed("renew leases"))
      ),
    expiredRuns: sql<{ id: string; thread_id: string }>`SELECT id, thread_id FROM runs
      WHERE status = 'running' AND (lease_expires_at IS NULL OR lease_expires_at < now())`.pipe(
      Effect.map((rows) => rows.map((r): RunRef => ({ runId: r.id, threadId: r.thread_id }))),
      Effect.mapError(failed("list expired runs"))
    ),
    activeRun: (threadId) =>
      sql<RunRow>`SELECT ${runColumns} FROM runs WHERE thread_id = ${threadId} AND status = 'running'`.pipe(
        Effect.map((rows) => Option.map(Option.fromNullable(rows[0]), toRun)),
        Effect.mapError(failed("read the active run"))
      ),
    queueHead: (threadId) =>
      sql<{ message_id: string }>`SELECT message_id FROM message_queue WHERE thread_id = ${threadId}
        ORDER BY position LIMIT 1`.pipe(
        Effect.map((rows) => Option.fromNullable(rows[0]?.message_id)),
        Effect.mapError(failed("read the message queue"))
      ),
    idleQueues: sql<{ thread_id: string }>`SELECT DISTINCT q.thread_id FROM message_queue q
      WHERE NOT EXISTS (SELECT 1 FROM runs r WHERE r.thread_id = q.thread_id AND r.status = 'running')`.pipe(
      Effect.map((rows) => rows.map((r) => r.thread_id)),
      Effect.mapError(failed("list idle queues"))
    )
  })
})

export const SqlEventStoreLive: Layer.Layer<EventStore, never, SqlClient.SqlClient> = Layer.effect(EventStore, make)

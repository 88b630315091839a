/**
 * Threads: the repository of threads, members, messages, runs and the
 * event log. Every event gets the next per-thread `seq` inside the
 * transaction of what it describes.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import { Clock, Effect, Option } from "effect"
import { randomUUID } from "node:crypto"
import { DatabaseError } from "../domain/Errors.ts"
import type { EventDraft, EventType, StoredEvent } from "../domain/Events.ts"

export interface ThreadSummary {
  readonly thread_id: string
  readonly title: string | null
  readonly created_at: string
  readonly head_seq: number
}

export type RunStatus = "running" | "completed" | "failed" | "cancelled"

export interface RunRow {
  readonly run_id: string
  readonly thread_id: string
  readonly status: RunStatus
}

export interface MessageRow {
  readonly message_id: string
  readonly user_id: string
  readonly content: string
  readonly created_at: string
}

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

const dbError = (reason: string) => (cause: SqlError) => new DatabaseError({ reason, cause })

const nowDate = Effect.map(Clock.currentTimeMillis, (ms) => new Date(ms))

export class Threads extends Effect.Service<Threads>()("agent-chat/Threads", {
  effect: Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient

    const create = (input: {
      readonly createdBy: string
      readonly title: string | null
      readonly members: ReadonlyArray<string>
    }) =>
      Effect.gen(function*() {
        const threadId = randomUUID()
        const now = yield* nowDate
        const members = [...new Set([input.createdBy, ...input.members])]
        yield* sql`INSERT INTO threads (id, title, created_by, created_at) VALUES (${threadId}, ${input.title}, ${input.createdBy}, ${now})`
        yield* sql`INSERT INTO thread_members ${
          sql.insert(members.map((user_id) => ({ thread_id: threadId, user_id })))
        }`
        return threadId
      }).pipe(sql.withTransaction, Effect.mapError(dbError("create thread")))

    const isMember = (threadId: string, userId: string) =>
      sql<{ one: number }>`SELECT 1 AS one FROM thread_members WHERE thread_id = ${threadId} AND user_id = ${userId}`
        .pipe(
          Effect.map((rows) => rows.length > 0),
          Effect.mapError(dbError("check membership"))
        )

    const listForUser = (userId: string) =>
      sql<{ id: string; title: string | null; created_at: Date; head_seq: number }>`
        SELECT t.id, t.title, t.created_at, t.head_seq
        FROM threads t JOIN thread_members m ON m.thread_id = t.id
        WHERE m.user_id = ${userId}
        ORDER BY t.created_at DESC, t.id`.pipe(
        Effect.map((rows) =>
          rows.map((r): ThreadSummary => ({
            thread_id: r.id,
            title: r.title,
            created_at: r.created_at.toISOString(),
            head_seq: r.head_seq
          }))
        ),
        Effect.mapError(dbError("list threads"))
      )

    const headSeq = (threadId: string) =>
      sql<{ head_seq: number }>`SELECT head_seq FROM threads WHERE id = ${threadId}`.pipe(
        Effect.map((rows) => Option.fromNullable(rows[0]?.head_seq)),
        Effect.mapError(dbError("read head seq"))
      )

    const eventsAfter = (threadId: string, afterSeq: number, limit: number) =>
      sql<EventRow>`
        SELECT id, thread_id, run_id, seq, created_at, event_type, data FROM events
        WHERE thread_id = ${threadId} AND seq > ${afterSeq}
        ORDER BY seq LIMIT ${limit}`.pipe(
        Effect.map((rows) => rows.map(toStored)),
        Effect.mapError(dbError("read events"))
      )

    /** Appends in the caller's transaction (or its own): seqs are allocated under the thread's row lock. */
    const append = (threadId: string, drafts: ReadonlyArray<EventDraft>) =>
      Effect.gen(function*() {
        if (drafts.length === 0) return []
        const now = yield* nowDate
        const [row] = yield* sql<{ head_seq: number }>`
          UPDATE threads SET head_seq = head_seq + ${drafts.length} WHERE id = ${threadId} RETURNING head_seq`
        if (row === undefined) return yield* Effect.dieMessage(`append to missing thread ${threadId}`)
        const first = row.head_seq - drafts.length + 1
        const events = drafts.map((d, i): StoredEvent => ({
          event_id: randomUUID(),
          thread_id: threadId,
          run_id: d.run_id,
          seq: first + i,
          timestamp: now.toISOString(),
          event_type: d.event_type,
          data: d.data
        }))
        yield* sql`INSERT INTO events ${
          sql.insert(events.map((e) => ({
            thread_id: e.thread_id,
            seq: e.seq,
            id: e.event_id,
            event_type: e.event_type,
            run_id: e.run_id,
            created_at: now,
            data: JSON.stringify(e.data)
          })))
        }`
        return events
      }).pipe(sql.withTransaction, Effect.mapError(dbError("append events")))

    const insertMessage = (input: { readonly threadId: string; readonly userId: string; readonly content: string }) =>
      Effect.gen(function*() {
        const messageId = randomUUID()
        const now = yield* nowDate
        yield* sql`INSERT INTO messages (id, thread_id, user_id, content, created_at)
          VALUES (${messageId}, ${input.threadId}, ${input.userId}, ${input.content}, ${now})`
        return messageId
      }).pipe(Effect.mapError(dbError("insert message")))

    /** Fails with `None` when the thread already has a running run (the partial unique index). */
    const insertRun = (input: { readonly threadId: string; readonly messageId: string; readonly agent: string }) =>
      Effect.gen(function*() {
        const runId = randomUUID()
        const now = yield* nowDate
        const rows = yield* sql`INSERT INTO runs (id, thread_id, message_id, agent, status, started_at)
          VALUES (${runId}, ${input.threadId}, ${input.messageId}, ${input.agent}, 'running', ${now})
          ON CONFLICT (thread_id) WHERE status = 'running' DO NOTHING
          RETURNING id`
        return rows.length === 0 ? Option.none() : Option.some(runId)
      }).pipe(Effect.mapError(dbError("insert run")))

    const hasActiveRun = (threadId: string) =>
      sql`SELECT 1 FROM runs WHERE thread_id = ${threadId} AND status = 'running'`.pipe(
        Effect.map((rows) => rows.length > 0),
        Effect.mapError(dbError("check active run"))
      )

    /** Ends a run that is still running; false when it had already ended. */
    const finishRun = (runId: string, status: Exclude<RunStatus, "running">, errorCode: string | null) =>
      Effect.gen(function*() {
        const now = yield* nowDate
        const rows = yield* sql`UPDATE runs SET status = ${status}, error_code = ${errorCode}, ended_at = ${now}
          WHERE id = ${runId} AND status = 'running' RETURNING id`
        return rows.length > 0
      }).pipe(Effect.mapError(dbError("finish run")))

    const findRun = (runId: string) =>
      sql<RunRow>`SELECT id AS run_id, thread_id, status FROM runs WHERE id = ${runId}`.pipe(
        Effect.map((rows) => Option.fromNullable(rows[0])),
        Effect.mapError(dbError("find run"))
      )

    const runningRuns = sql<RunRow>`SELECT id AS run_id, thread_id, status FROM runs WHERE status = 'running'`.pipe(
      Effect.mapError(dbError("list running runs"))
    )

    const messageRows = (rows: ReadonlyArray<{ id: string; user_id: string; content: string; created_at: Date }>) =>
      rows.map((r): MessageRow => ({
        message_id: r.id,
        user_id: r.user_id,
        content: r.content,
        created_at: r.created_at.toISOString()
      }))

    /** Earlier messages of a thread that contain every word of the query, newest first. */
    const searchMessages = (input: {
      readonly threadId: string
      readonly terms: ReadonlyArray<string>
      readonly excludeMessageId: string
      readonly limit: number
    }) => {
      const patterns = input.terms.map((t) => `%${t.replace(/[\\%_]/g, (c) => `\\${c}`)}%`)
      const filters = patterns.map((p) => sql`content ILIKE ${p}`)
      return sql<{ id: string; user_id: string; content: string; created_at: Date }>`
        SELECT id, user_id, content, created_at FROM messages
        WHERE thread_id = ${input.threadId} AND id <> ${input.excludeMessageId}
        ${filters.length > 0 ? sql`AND ${sql.and(filters)}` : sql``}
        ORDER BY position DESC LIMIT ${input.limit}`.pipe(
        Effect.map(messageRows),
        Effect.mapError(dbError("search messages"))
      )
    }

    const recentMessages = (threadId: string, limit: number) =>
      sql<{ id: string; user_id: string; content: string; created_at: Date }>`
        SELECT id, user_id, content, created_at FROM messages WHERE thread_id = ${threadId}
        ORDER BY position DESC LIMIT ${limit}`.pipe(
        Effect.map((rows) => messageRows(rows).reverse()),
        Effect.mapError(dbError("read messages"))
      )

    const transaction = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E | DatabaseError, R> =>
      sql.withTransaction(effect).pipe(
        Effect.catchIf(
          (error): error is SqlError =>
            typeof error === "object" && error !== null && "_tag" in error && error._tag === "SqlError",
          (cause) => Effect.fail(new DatabaseError({ reason: "transaction", cause }))
        )
      ) as Effect.Effect<A, E | DatabaseError, R>

    return {
      create,
      isMember,
      listForUser,
      headSeq,
      eventsAfter,
      append,
      insertMessage,
      insertRun,
      hasActiveRun,
      finishRun,
      findRun,
      runningRuns,
      searchMessages,
      recentMessages,
      transaction
    } as const
  })
}) {}

/**
 * Threads: the repository of threads, their members and their messages.
 * Events and runs are the event log's (src/eventlog); who may do what is
 * Access's.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import { Clock, Effect, Option } from "effect"
import { randomUUID } from "node:crypto"
import { transaction } from "../database/Transaction.ts"
import { DatabaseError } from "../domain/Errors.ts"

export interface ThreadSummary {
  readonly thread_id: string
  readonly title: string | null
  readonly created_at: string
  readonly head_seq: number
}

export interface ThreadDetails extends ThreadSummary {
  readonly created_by: string
  readonly members: ReadonlyArray<string>
}

export interface Membership {
  readonly createdBy: string
  readonly headSeq: number
}

export interface MessageRow {
  readonly message_id: string
  readonly user_id: string
  readonly content: string
  readonly created_at: string
}

const dbError = (reason: string) => (cause: SqlError) => new DatabaseError({ reason, cause })

const nowDate = Effect.map(Clock.currentTimeMillis, (ms) => new Date(ms))

export class Threads extends Effect.Service<Threads>()("agent-chat/Threads", {
  effect: Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const provideSql = Effect.provideService(SqlClient.SqlClient, sql)

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
      }).pipe(Effect.mapError(dbError("create thread")), (body) => transaction(body), provideSql)

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

    const describe = (threadId: string) =>
      Effect.gen(function*() {
        const [thread] = yield* sql<
          { id: string; title: string | null; created_by: string; created_at: Date; head_seq: number }
        >`
          SELECT id, title, created_by, created_at, head_seq FROM threads WHERE id = ${threadId}`
        if (thread === undefined) return Option.none<ThreadDetails>()
        const members = yield* sql<{ user_id: string }>`
          SELECT user_id FROM thread_members WHERE thread_id = ${threadId} ORDER BY user_id`
        return Option.some<ThreadDetails>({
          thread_id: thread.id,
          title: thread.title,
          created_by: thread.created_by,
          created_at: thread.created_at.toISOString(),
          head_seq: thread.head_seq,
          members: members.map((m) => m.user_id)
        })
      }).pipe(Effect.mapError(dbError("describe thread")))

    /**
     * The user's membership of a thread, with the thread's creator and head, in one snapshot; `lock`
     * takes the thread's row lock first (inside a write transaction), so that no change of members
     * can commit between this check and the write it guards.
     */
    const membership = (threadId: string, userId: string, lock: boolean) =>
      sql<{ created_by: string; head_seq: number }>`
        SELECT t.created_by, t.head_seq FROM threads t JOIN thread_members m ON m.thread_id = t.id
        WHERE t.id = ${threadId} AND m.user_id = ${userId} ${lock ? sql`FOR UPDATE OF t` : sql``}`.pipe(
        Effect.map((rows) =>
          Option.map(
            Option.fromNullable(rows[0]),
            (r): Membership => ({ createdBy: r.created_by, headSeq: r.head_seq })
          )
        ),
        Effect.mapError(dbError("check membership"))
      )

    /** The members of each of these threads, sorted; a thread that does not exist has none. */
    const membersOf = (threadIds: ReadonlyArray<string>) =>
      (threadIds.length === 0
        ? Effect.succeed<ReadonlyArray<{ thread_id: string; user_id: string }>>([])
        : sql<{ thread_id: string; user_id: string }>`
        SELECT thread_id, user_id FROM thread_members WHERE thread_id IN ${sql.in(threadIds)}
        ORDER BY thread_id, user_id`).pipe(
          Effect.map((rows) => {
            const members = new Map<string, Array<string>>(threadIds.map((id) => [id, []]))
            for (const row of rows) members.get(row.thread_id)?.push(row.user_id)
            return members as ReadonlyMap<string, ReadonlyArray<string>>
          }),
          Effect.mapError(dbError("read members"))
        )

    const memberCount = (threadId: string) =>
      sql<{ n: string | number }>`SELECT count(*) AS n FROM thread_members WHERE thread_id = ${threadId}`.pipe(
        Effect.map((rows) => Number(rows[0]?.n ?? 0)),
        Effect.mapError(dbError("count members"))
      )

    /** Adds the users who are not members yet; returns them. */
    const addMembers = (threadId: string, userIds: ReadonlyArray<string>) =>
      userIds.length === 0 ?
        Effect.succeed([]) :
        sql<{ user_id: string }>`INSERT INTO thread_members ${
          sql.insert([...new Set(userIds)].map((user_id) => ({ thread_id: threadId, user_id })))
        } ON CONFLICT DO NOTHING RETURNING user_id`.pipe(
          Effect.map((rows) => rows.map((r) => r.user_id).sort()),
          Effect.mapError(dbError("add members"))
        )

    /** Removes the users who are members; returns them. */
    const removeMembers = (threadId: string, userIds: ReadonlyArray<string>) =>
      userIds.length === 0 ? Effect.succeed([]) : sql<{ user_id: string }>`DELETE FROM thread_members
        WHERE thread_id = ${threadId} AND ${sql.in("user_id", [...new Set(userIds)])} RETURNING user_id`.pipe(
        Effect.map((rows) => rows.map((r) => r.user_id).sort()),
        Effect.mapError(dbError("remove members"))
      )

    const insertMessage = (input: { readonly threadId: string; readonly userId: string; readonly content: string }) =>
      Effect.gen(function*() {
        const messageId = randomUUID()
        const now = yield* nowDate
        yield* sql`INSERT INTO messages (id, thread_id, user_id, content, created_at)
          VALUES (${messageId}, ${input.threadId}, ${input.userId}, ${input.content}, ${now})`
        return messageId
      }).pipe(Effect.mapError(dbError("insert message")))

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

    return {
      create,
      listForUser,
      describe,
      membership,
      memberCount,
      membersOf,
      addMembers,
      removeMembers,
      insertMessage,
      searchMessages
    } as const
  })
}) {}

/**
 * U+0000 (NUL) in what a client sends. PostgreSQL's text type refuses it, so a NUL that reached a
 * query would fail like an outage: `unavailable`, a warning, and a nudge to the database monitor.
 * It is the client's mistake, and must be answered as one before any SQL runs.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import { expect, layer } from "@effect/vitest"
import { Effect } from "effect"
import { DatabaseMonitor } from "../../src/database/Monitor.ts"
import { ChatClient, type EventFrame, UpgradeRefused } from "../utils/ChatClient.ts"
import { toolCallingModel } from "../utils/Models.ts"
import { service, TestServer, type TestServerShape, withServer } from "../utils/TestServer.ts"
import { sign } from "../utils/tokens.ts"

const NUL = "\u0000"
const refused = (field: string) => `invalid field "${field}": must not contain U+0000 (NUL)`

/** Rows of each table a client's request could have written to. */
const stored = (server: TestServerShape) =>
  Effect.runPromise(
    Effect.flatMap(
      SqlClient.SqlClient,
      (sql) =>
        sql<{ threads: number; members: number; messages: number; runs: number; events: number }>`
      SELECT (SELECT count(*)::int FROM threads) AS threads, (SELECT count(*)::int FROM thread_members) AS members,
        (SELECT count(*)::int FROM messages) AS messages, (SELECT count(*)::int FROM runs) AS runs,
        (SELECT count(*)::int FROM events) AS events`
    ).pipe(
      Effect.map((rows) => rows[0]),
      Effect.provideService(SqlClient.SqlClient, service(server, SqlClient.SqlClient))
    )
  )

/**
 * The database was never suspected: nothing logged (a failed query logs a warning, then nudges the
 * monitor), the monitor up, readiness `ready`, and no loss counted.
 */
const expectDatabaseUntouched = async (server: TestServerShape, logged: ReadonlyArray<string>) => {
  expect(logged).toEqual([])
  expect(service(server, DatabaseMonitor).isUp()).toBe(true)
  const ready = await server.fetch("/health/ready")
  expect(ready.status).toBe(200)
  expect(await ready.json()).toMatchObject({ status: "ready", components: { database: { status: "up" } } })
  expect(await (await server.fetch("/metrics")).text()).not.toMatch(/agentchat_database_lost_total [1-9]/)
}

const logged: Array<string> = []

layer(TestServer.layer({ logged }), { excludeTestServices: true, timeout: 60_000 })("NUL in client strings", (it) => {
  it.effect("answers a NUL in any frame field with invalid_message naming it, stores nothing, and keeps the database up", () =>
    withServer(async (server) => {
      const alice = await server.connect("alice")
      const { thread_id } = await alice.request({ type: "create_thread", title: "real" })
      const before = await stored(server)
      logged.length = 0
      const cases: Array<[Record<string, unknown>, string | undefined, string]> = [
        [{ type: "send_message", id: "n1", thread_id, content: `hi${NUL}there` }, "n1", "content"],
        [{ type: "send_message", id: "n2", thread_id: `${thread_id}${NUL}`, content: "hi" }, "n2", "thread_id"],
        [{ type: "create_thread", id: "n3", title: `a${NUL}b` }, "n3", "title"],
        [{ type: "create_thread", id: "n4", members: ["bob", `b${NUL}ob`] }, "n4", "members.1"],
        [{ type: "join_thread", id: "n5", thread_id: `${NUL}` }, "n5", "thread_id"],
        [{ type: "join_thread", id: "n6", thread_id: `${thread_id}${NUL}`, after_seq: 0 }, "n6", "thread_id"],
        [{ type: "leave_thread", id: "n7", thread_id: `x${NUL}` }, "n7", "thread_id"],
        [{ type: "cancel_run", id: "n8", run_id: `run${NUL}` }, "n8", "run_id"],
        [{ type: "refresh_token", id: "n9", token: `eyJ${NUL}` }, "n9", "token"],
        // An id with a NUL is no usable id, so it is not echoed as `ref`.
        [{ type: "ping", id: `p${NUL}` }, undefined, "id"],
        [{ type: "create_thread", id: `c${NUL}` }, undefined, "id"]
      ]
      for (const [frame, ref, field] of cases) {
        const label = JSON.stringify(frame)
        const seen = alice.frames.length
        alice.send(frame)
        const reply = await alice.waitFor((f) => alice.frames.indexOf(f) >= seen && f.type === "error")
        expect(reply, label).toEqual({
          type: "error",
          ...(ref === undefined ? {} : { ref }),
          code: "invalid_message",
          message: refused(field)
        })
      }
      alice.send({ type: "ping", id: "still-open" })
      await alice.waitFor((f) => f.type === "pong" && f.ref === "still-open")
      expect(alice.closed).toBeUndefined()
      expect(await stored(server)).toEqual(before)
      expect(alice.events(thread_id)).toEqual([])
      await expectDatabaseUntouched(server, logged)
    }))

  it.effect("stores the other control characters and lone surrogates, which PostgreSQL accepts", () =>
    withServer(async (server) => {
      const alice = await server.connect("alice")
      const { thread_id } = await alice.request({ type: "create_thread", title: "tab\there\u0001" })
      logged.length = 0
      const controls = Array.from({ length: 31 }, (_, i) => String.fromCharCode(i + 1)).join("")
      const content = `${controls}\u007f lone \ud800 surrogate`
      const sent = await alice.request({ type: "send_message", thread_id, content })
      await alice.waitRunEnd(sent.run_id)
      const created = alice.events(thread_id).find((e) => e.event_type === "message_created")
      expect(created?.data.content).toBe(content)
      await expectDatabaseUntouched(server, logged)
    }))

  it.effect("answers 404 for a thread id with NUL in an HTTP path, without a query", () =>
    withServer(async (server) => {
      const alice = await server.connect("alice")
      const { thread_id } = await alice.request({ type: "create_thread" })
      logged.length = 0
      for (
        const path of [
          `/api/threads/%00x/events`,
          `/api/threads/${thread_id}%00/events`,
          `/api/threads/%00/events?after_seq=1`
        ]
      ) {
        const response = await server.fetch(path, { userId: "alice" })
        expect(response.status, path).toBe(404)
        expect(await response.json(), path).toEqual({ error: "not_found", reason: "thread not found" })
      }
      // The real thread is still served.
      expect((await server.fetch(`/api/threads/${thread_id}/events`, { userId: "alice" })).status).toBe(200)
      await expectDatabaseUntouched(server, logged)
    }))

  it.effect("refuses a dev token for a user id with NUL with 400 naming the field", () =>
    withServer(async (server) => {
      const response = await server.fetch("/api/dev/token", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ user_id: `zoe${NUL}` })
      })
      expect(response.status).toBe(400)
      const body = await response.json()
      expect(body.error).toBe("invalid_message")
      expect(body.reason).toContain(refused("user_id"))
    }))

  it.effect("refuses a token whose sub contains NUL with 401, on /ws and on the HTTP API", () =>
    withServer(async (server) => {
      logged.length = 0
      const token = await sign("unused", { subject: `alice${NUL}` })
      for (const tokenIn of ["header", "query"] as const) {
        const outcome = await ChatClient.connect(server.wsUrl, { token, tokenIn }).then(
          (client) => {
            client.close()
            return client
          },
          (error: unknown) => error
        )
        expect(outcome, tokenIn).toBeInstanceOf(UpgradeRefused)
        const refusal = outcome as UpgradeRefused
        expect(refusal.status, tokenIn).toBe(401)
        expect(refusal.body, tokenIn).toEqual({
          error: "unauthorized",
          reason: "token \"sub\" is not a user id: must not contain U+0000 (NUL)"
        })
      }
      const listed = await fetch(`${server.httpUrl}/api/threads`, { headers: { authorization: `Bearer ${token}` } })
      expect(listed.status).toBe(401)
      expect((await listed.json()).reason).toMatch(/U\+0000/)
      await expectDatabaseUntouched(server, logged)
    }))
})

const toolLogged: Array<string> = []

layer(
  TestServer.layer({ model: toolCallingModel("search_thread", { query: `budget${NUL}plan` }), logged: toolLogged }),
  { excludeTestServices: true, timeout: 60_000 }
)("NUL in a tool's input", (it) => {
  it.effect("makes search_thread answer a tool error, not a database error", () =>
    withServer(async (server) => {
      const alice = await server.connect("alice")
      const { thread_id } = await alice.request({ type: "create_thread" })
      const sent = await alice.request({
        type: "send_message",
        thread_id,
        content: "what did we say about the budget?"
      })
      expect((await alice.waitRunEnd(sent.run_id)).event_type).toBe("agent_completed")
      const completed = alice.events(thread_id).find((e): e is EventFrame => e.event_type === "tool_completed")
      expect(completed?.data).toMatchObject({ tool: "search_thread" })
      expect(completed?.data.output).toBeUndefined()
      expect(completed?.data.error).toMatch(/^invalid input: [\s\S]*must not contain U\+0000 \(NUL\)/)
      await expectDatabaseUntouched(server, toolLogged)
    }))
})

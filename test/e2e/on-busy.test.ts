/**
 * `on_busy` on `send_message` (docs/PROTOCOL.md section 2): `reject` answers
 * busy, `interrupt` cancels the active run and starts the new message's,
 * `enqueue` stores the message at once and starts its run when the runs
 * before it have ended, one by one, in order; the queue is in the database,
 * so another process on it starts what a stopped process had queued.
 */
import { describe, expect, it, layer } from "@effect/vitest"
import { Context, Duration, Effect, Exit, Layer, Scope } from "effect"
import type { ChatMessage } from "../../src/llm/SimpleModel.ts"
import { Supervisor } from "../../src/runs/Supervisor.ts"
import { type ChatClient, type EventFrame, RequestFailed } from "../utils/ChatClient.ts"
import { expectValidRuns } from "../utils/invariants.ts"
import { delta, Gate, scriptedModel, thinking } from "../utils/Models.ts"
import { TestDatabaseLive } from "../utils/TestDatabase.ts"
import { service, TestServer, type TestServerShape, withServer } from "../utils/TestServer.ts"
import { until } from "../utils/until.ts"

/** Answers the latest message of the history it is given; one that starts with "hold" waits for the gate. */
const echo = (gate: Gate) =>
  scriptedModel((messages: ReadonlyArray<ChatMessage>) => {
    const last = [...messages].reverse().find((m) => m.role === "user")
    const content = last?.role === "user" ? last.content : ""
    return content.startsWith("hold")
      ? [thinking("holding"), "gate", delta(`re: ${content}`)]
      : [delta(`re: ${content}`)]
  }, gate)

const codeOf = (promise: Promise<unknown>) =>
  promise.then(() => "ok", (error: unknown) => error instanceof RequestFailed ? error.code : String(error))

const stored = async (server: TestServerShape, threadId: string): Promise<Array<EventFrame>> =>
  (await (await server.fetch(`/api/threads/${threadId}/events`, { userId: "alice" })).json()).events

const freshThread = async (server: TestServerShape, members: Array<string> = []) => {
  const alice = await server.connect("alice")
  const { thread_id } = await alice.request({ type: "create_thread", members })
  await alice.request({ type: "join_thread", thread_id })
  return { alice, thread_id: thread_id as string }
}

/** The run is mid-answer: it has thought, and waits for the gate. */
const holding = (client: ChatClient, runId: string) =>
  client.waitFor((f) => f.type === "event" && f.event_type === "agent_thinking" && f.run_id === runId)

/** The run that a message started, once its agent_started has arrived. */
const runOf = async (client: ChatClient, messageId: string, timeoutMs?: number) =>
  ((await client.waitFor(
    (f) => f.type === "event" && f.event_type === "agent_started" && f.data.message_id === messageId,
    timeoutMs
  )) as EventFrame).run_id!

const send = (client: ChatClient, thread_id: string, content: string, on_busy?: string) =>
  client.request({ type: "send_message", thread_id, content, ...(on_busy === undefined ? {} : { on_busy }) })

const position = (events: ReadonlyArray<EventFrame>, find: (e: EventFrame) => boolean) => {
  const at = events.findIndex(find)
  expect(at).toBeGreaterThanOrEqual(0)
  return at
}
const terminalOf = (runId: string) => (e: EventFrame) =>
  e.run_id === runId && (e.event_type === "agent_completed" || e.event_type === "agent_error")
const startOf = (messageId: string) => (e: EventFrame) =>
  e.event_type === "agent_started" && e.data.message_id === messageId
const createdOf = (messageId: string) => (e: EventFrame) =>
  e.event_type === "message_created" && e.data.message_id === messageId

const metric = async (server: TestServerShape, name: string) => {
  const text = await (await server.fetch("/metrics")).text()
  const line = text.split("\n").find((l) => l.startsWith(`${name} `))
  return Number(line?.slice(name.length + 1) ?? 0)
}
const CANCELLED = `agentchat_runs_total{outcome="cancelled"}`

const gate = new Gate()

layer(TestServer.layer({ model: echo(gate) }), { excludeTestServices: true, timeout: 60_000 })("on_busy", (it) => {
  it.effect("reject, by default or named, answers busy and stores nothing of the message, beside a queued one", () =>
    withServer(async (server) => {
      const { alice, thread_id } = await freshThread(server)
      const first = await send(alice, thread_id, "hold 1")
      await holding(alice, first.run_id)
      const queued = await send(alice, thread_id, "queued", "enqueue")
      expect(await codeOf(send(alice, thread_id, "no"))).toBe("busy")
      expect(await codeOf(send(alice, thread_id, "no", "reject"))).toBe("busy")
      gate.allow()
      expect((await alice.waitRunEnd(first.run_id)).event_type).toBe("agent_completed")
      expect((await alice.waitRunEnd(await runOf(alice, queued.message_id))).event_type).toBe("agent_completed")
      const events = await stored(server, thread_id)
      expectValidRuns(events)
      expect(events.filter((e) => e.event_type === "message_created").map((e) => e.data.content))
        .toEqual(["hold 1", "queued"])
    }))

  it.effect("interrupt ends the active run cancelled, then stores the message and starts its run", () =>
    withServer(async (server) => {
      const { alice, thread_id } = await freshThread(server, ["bob"])
      const bob = await server.connect("bob")
      const first = await send(alice, thread_id, "hold 2")
      await holding(alice, first.run_id)
      const cancelledBefore = await metric(server, CANCELLED)
      // Any member may interrupt, as any member may cancel.
      const second = await send(bob, thread_id, "instead", "interrupt")
      expect(second).toEqual({ type: "ack", ref: second.ref, message_id: second.message_id, run_id: second.run_id })
      expect(second.run_id).not.toBe(first.run_id)
      expect(await alice.waitRunEnd(first.run_id)).toMatchObject({
        event_type: "agent_error",
        data: { code: "cancelled", message: "the run was cancelled" }
      })
      expect(await alice.waitRunEnd(second.run_id)).toMatchObject({
        event_type: "agent_completed",
        data: { response: "re: instead" }
      })
      const events = await stored(server, thread_id)
      expectValidRuns(events)
      // The cancelled run's one terminal, then the message and its run's start, together.
      const ended = position(events, terminalOf(first.run_id))
      const created = position(events, createdOf(second.message_id))
      expect(ended).toBeLessThan(created)
      expect(events[created + 1]).toMatchObject({ event_type: "agent_started", run_id: second.run_id })
      for (const run of [first.run_id, second.run_id]) expect(events.filter(terminalOf(run))).toHaveLength(1)
      // Its process reports the run cancelled, as for cancel_run.
      expect(await metric(server, CANCELLED)).toBe(cancelledBefore + 1)
    }))

  it.effect("interrupt on an idle thread simply starts; one by a caller who may not write gets not_found", () =>
    withServer(async (server) => {
      const { alice, thread_id } = await freshThread(server)
      const idle = await send(alice, thread_id, "hold 3", "interrupt")
      expect(typeof idle.run_id).toBe("string")
      await holding(alice, idle.run_id)
      const carol = await server.connect("carol")
      expect(await codeOf(send(carol, thread_id, "mine now", "interrupt"))).toBe("not_found")
      // The run went on; a member's interrupt then ends it.
      const urgent = await send(alice, thread_id, "urgent", "interrupt")
      expect(await alice.waitRunEnd(idle.run_id)).toMatchObject({ data: { code: "cancelled" } })
      expect(await alice.waitRunEnd(urgent.run_id)).toMatchObject({ data: { response: "re: urgent" } })
      const events = await stored(server, thread_id)
      expectValidRuns(events)
      expect(events.filter((e) => e.event_type === "message_created").map((e) => e.data.content))
        .toEqual(["hold 3", "urgent"])
    }))

  it.effect("enqueue stores the message at once, acks it queued, and starts the queue in order, one by one", () =>
    withServer(async (server) => {
      const { alice, thread_id } = await freshThread(server)
      const first = await send(alice, thread_id, "hold 4")
      await holding(alice, first.run_id)
      const one = await send(alice, thread_id, "one", "enqueue")
      expect(one).toEqual({ type: "ack", ref: one.ref, message_id: one.message_id, run_id: null, queued: true })
      // Its message_created is stored now, while the first run still runs.
      expect((await stored(server, thread_id)).at(-1)).toMatchObject({
        event_type: "message_created",
        run_id: null,
        data: { message_id: one.message_id, content: "one" }
      })
      const two = await send(alice, thread_id, "two", "enqueue")
      expect(two).toMatchObject({ run_id: null, queued: true })
      gate.allow()
      expect((await alice.waitRunEnd(first.run_id)).event_type).toBe("agent_completed")
      const runs = [await runOf(alice, one.message_id), await runOf(alice, two.message_id)]
      // Each run answers its own message, not the ones queued after it.
      for (const [i, content] of ["one", "two"].entries()) {
        expect(await alice.waitRunEnd(runs[i]!)).toMatchObject({ data: { response: `re: ${content}` } })
      }
      const events = await stored(server, thread_id)
      expectValidRuns(events)
      expect(position(events, terminalOf(first.run_id))).toBeLessThan(position(events, startOf(one.message_id)))
      expect(position(events, terminalOf(runs[0]!))).toBeLessThan(position(events, startOf(two.message_id)))
      // The queue is empty: the thread takes a plain message again.
      const after = await send(alice, thread_id, "after")
      expect((await alice.waitRunEnd(after.run_id)).event_type).toBe("agent_completed")
    }))

  it.effect("enqueue on an idle thread starts at once, with a plain ack; the next one, sent while it runs, waits", () =>
    withServer(async (server) => {
      const { alice, thread_id } = await freshThread(server)
      const sent = await send(alice, thread_id, "hold now", "enqueue")
      expect(sent).toEqual({ type: "ack", ref: sent.ref, message_id: sent.message_id, run_id: sent.run_id })
      expect(typeof sent.run_id).toBe("string")
      await holding(alice, sent.run_id)
      const then = await send(alice, thread_id, "then", "enqueue")
      expect(then).toMatchObject({ run_id: null, queued: true })
      gate.allow()
      expect(await alice.waitRunEnd(sent.run_id)).toMatchObject({ data: { response: "re: hold now" } })
      expect(await alice.waitRunEnd(await runOf(alice, then.message_id))).toMatchObject({
        data: { response: "re: then" }
      })
      const events = await stored(server, thread_id)
      expect(events.slice(0, 2).map((e) => e.event_type)).toEqual(["message_created", "agent_started"])
      expectValidRuns(events)
    }))

  it.effect("interrupt goes before what is queued; the queue then goes on in order", () =>
    withServer(async (server) => {
      const { alice, thread_id } = await freshThread(server)
      const first = await send(alice, thread_id, "hold 5")
      await holding(alice, first.run_id)
      const queued = await send(alice, thread_id, "queued", "enqueue")
      const urgent = await send(alice, thread_id, "urgent", "interrupt")
      expect(await alice.waitRunEnd(first.run_id)).toMatchObject({ data: { code: "cancelled" } })
      expect(await alice.waitRunEnd(urgent.run_id)).toMatchObject({ data: { response: "re: urgent" } })
      const later = await runOf(alice, queued.message_id)
      expect(await alice.waitRunEnd(later)).toMatchObject({ data: { response: "re: queued" } })
      const events = await stored(server, thread_id)
      expectValidRuns(events)
      expect(position(events, terminalOf(urgent.run_id))).toBeLessThan(position(events, startOf(queued.message_id)))
    }))

  it.effect("an on_busy that is not one of the three is invalid_message naming the field", () =>
    withServer(async (server) => {
      const { alice, thread_id } = await freshThread(server)
      for (const on_busy of ["queue", 1, null]) {
        const error = await alice.request({ type: "send_message", thread_id, content: "x", on_busy }).then(
          () => undefined,
          (e: unknown) => e
        )
        expect(error).toBeInstanceOf(RequestFailed)
        expect((error as RequestFailed).code).toBe("invalid_message")
        expect((error as RequestFailed).message).toMatch(/"on_busy"/)
      }
      expect(await stored(server, thread_id)).toEqual([])
    }))
})

describe("on_busy across processes", () => {
  it.scopedLive("an interrupt on another process cancels the owner's run there and starts its own", () =>
    Effect.gen(function*() {
      const gate = new Gate()
      const database = yield* Layer.memoize(TestDatabaseLive())
      const options = { model: echo(gate), database }
      const first = Context.get(yield* Layer.build(TestServer.layer(options)), TestServer)
      const second = Context.get(yield* Layer.build(TestServer.layer(options)), TestServer)
      const alice = yield* Effect.promise(() => first.connect("alice"))
      const elsewhere = yield* Effect.promise(() => second.connect("alice"))
      const { thread_id } = yield* Effect.promise(() => alice.request({ type: "create_thread" }))
      yield* Effect.promise(() => alice.request({ type: "join_thread", thread_id }))
      const held = yield* Effect.promise(() => send(alice, thread_id, "hold 7"))
      yield* Effect.promise(() => holding(alice, held.run_id))

      // (Each process has its own broker here: a process's connections see live what it stores.)
      const urgent = yield* Effect.promise(() => send(elsewhere, thread_id, "urgent", "interrupt"))
      expect(yield* Effect.promise(() => elsewhere.waitRunEnd(urgent.run_id))).toMatchObject({
        data: { response: "re: urgent" }
      })
      // The owner's loop, let go, is refused its next event and stores nothing more of its cancelled run.
      gate.openFully()
      yield* Effect.promise(() =>
        until(
          () => Effect.runPromise(service(first, Supervisor).activeRuns).then((n) => n === 0),
          "the owner to let the run go"
        )
      )
      const events = yield* Effect.promise(() => stored(first, thread_id))
      expect(events.find(terminalOf(held.run_id))).toMatchObject({ data: { code: "cancelled" } })
      expectValidRuns(events)
      expect(events.filter((e) => e.run_id === held.run_id).map((e) => e.event_type)).toEqual([
        "agent_started",
        "agent_thinking",
        "agent_error"
      ])
    }))

  it.scopedLive("a message queued on a process that stops gets its run from another process on the database", () =>
    Effect.gen(function*() {
      const gate = new Gate()
      const database = yield* Layer.memoize(TestDatabaseLive())
      const options = { model: echo(gate), database, config: { runLease: Duration.seconds(1) } }
      const scope = yield* Scope.make()
      const first = Context.get(yield* Layer.buildWithScope(TestServer.layer(options), scope), TestServer)
      const second = Context.get(yield* Layer.build(TestServer.layer(options)), TestServer)

      const alice = yield* Effect.promise(() => first.connect("alice"))
      const { thread_id } = yield* Effect.promise(() => alice.request({ type: "create_thread" }))
      const held = yield* Effect.promise(() => send(alice, thread_id, "hold 6"))
      yield* Effect.promise(() => holding(alice, held.run_id))
      const queued = yield* Effect.promise(() => send(alice, thread_id, "left behind", "enqueue"))
      expect(queued).toMatchObject({ run_id: null, queued: true })

      // The process that took it stops with its run unfinished; the other one starts the queued message.
      yield* Scope.close(scope, Exit.void)
      const watcher = yield* Effect.promise(() => second.connect("alice"))
      yield* Effect.promise(() => watcher.request({ type: "join_thread", thread_id, after_seq: 0 }))
      const run = yield* Effect.promise(() => runOf(watcher, queued.message_id, 15_000))
      const terminal = yield* Effect.promise(() => watcher.waitRunEnd(run, 15_000))
      expect(terminal).toMatchObject({ event_type: "agent_completed", data: { response: "re: left behind" } })
      const events = yield* Effect.promise(() => stored(second, thread_id))
      expectValidRuns(events)
      expect(events.find(terminalOf(held.run_id))).toMatchObject({ event_type: "agent_error" })
    }))
})

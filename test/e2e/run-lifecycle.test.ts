/**
 * The run lifecycle under database cuts: whatever the database does, every
 * run ends with exactly one terminal event, its last, with no tool call
 * left open, and its thread is free afterwards. The cuts are made by a
 * proxy that watches the server's queries, so each lands exactly where it
 * hurts: on the COMMIT of a run's terminal event, of a delta, or while a
 * tool is running.
 */
import { afterAll, expect, layer, onTestFinished } from "@effect/vitest"
import { Duration, Effect } from "effect"
import type { ChatMessage } from "../../src/llm/SimpleModel.ts"
import type { Tool } from "../../src/runs/Tool.ts"
import type { ChatClient, EventFrame } from "../utils/ChatClient.ts"
import { expectRunShape, expectValidRuns } from "../utils/invariants.ts"
import { call, delta, scriptedModel, thinking } from "../utils/Models.ts"
import { TcpProxy } from "../utils/TcpProxy.ts"
import { TestServer, type TestServerShape, withServer } from "../utils/TestServer.ts"

const proxy = await TcpProxy.start()
afterAll(() => proxy.close())

/** Answers in three deltas, or calls the stalling tool when asked to. */
const model = scriptedModel((messages: ReadonlyArray<ChatMessage>) => {
  const last = messages.at(-1)!
  if (last.role === "user" && last.content === "stall") return [thinking("calling"), call("stall-1", "stall", {})]
  return [thinking("thinking"), delta("one "), delta("two "), delta("three")]
})

const stall: Tool = { name: "stall", description: "never answers", parameters: {}, run: () => Effect.never }

const stored = async (server: TestServerShape, threadId: string): Promise<Array<EventFrame>> =>
  (await (await server.fetch(`/api/threads/${threadId}/events`, { userId: "alice" })).json()).events

const metric = async (server: TestServerShape, name: string) => {
  const text = await (await server.fetch("/metrics")).text()
  return Number(new RegExp(`^${name} (\\S+)$`, "m").exec(text)?.[1])
}

/** Cuts the database for a while once `trap` springs, then restores it. */
const outage = (trap: Promise<void>, ms: number) =>
  trap.then(() => new Promise<void>((resolve) => setTimeout(() => (proxy.restore(), resolve()), ms)))

const freshThread = async (server: TestServerShape): Promise<{ alice: ChatClient; thread_id: string }> => {
  const alice = await server.connect("alice")
  const { thread_id } = await alice.request({ type: "create_thread" })
  await alice.request({ type: "join_thread", thread_id })
  return { alice, thread_id }
}

/** The stored run is well formed, and the thread takes a new message (it is not left busy). */
const expectEndedAndFree = async (server: TestServerShape, alice: ChatClient, threadId: string, runId: string) => {
  const events = await stored(server, threadId)
  expectValidRuns(events)
  const run = expectRunShape(events, runId)
  const next = await alice.request({ type: "send_message", thread_id: threadId, content: "again" })
  expect((await alice.waitRunEnd(next.run_id, 20_000)).event_type).toBe("agent_completed")
  return run
}

layer(
  TestServer.layer({ model, extraTools: [stall], databaseProxy: proxy, config: { toolTimeout: Duration.seconds(1) } }),
  { excludeTestServices: true, timeout: 90_000 }
)("the run lifecycle under database cuts", (it) => {
  for (const forward of [false, true]) {
    it.effect(
      `ends a run whose terminal COMMIT was cut off (${forward ? "it reached the database" : "it was lost"})`,
      () =>
        withServer(async (server) => {
          onTestFinished(() => proxy.restore())
          const { alice, thread_id } = await freshThread(server)
          const restored = outage(proxy.cutWhen("\"response\":\"one two three\"", "COMMIT", forward), 1500)
          const sent = await alice.request({ type: "send_message", thread_id, content: "answer" })
          await restored
          // The run stayed active (its thread busy) until its end was stored; then it was delivered once.
          const terminal = await alice.waitRunEnd(sent.run_id, 30_000)
          expect(terminal.event_type).toBe("agent_completed")
          expect(terminal.data.response).toBe("one two three")
          const run = await expectEndedAndFree(server, alice, thread_id, sent.run_id)
          expect(alice.events(thread_id).filter((e) => e.run_id === sent.run_id).map((e) => e.event_id))
            .toEqual(run.map((e) => e.event_id))
          expect(await metric(server, "agentchat_runs_active")).toBe(0)
        })
    )
  }

  it.effect("ends a run cut off mid-answer with agent_error unavailable, not internal", () =>
    withServer(async (server) => {
      onTestFinished(() => proxy.restore())
      const { alice, thread_id } = await freshThread(server)
      const restored = outage(proxy.cutWhen("two ", "COMMIT", false), 1500)
      const sent = await alice.request({ type: "send_message", thread_id, content: "answer" })
      await restored
      const terminal = await alice.waitRunEnd(sent.run_id, 30_000)
      expect(terminal).toMatchObject({ event_type: "agent_error", data: { code: "unavailable" } })
      await expectEndedAndFree(server, alice, thread_id, sent.run_id)
    }))

  it.effect("closes a tool call cut off by the database with tool_completed interrupted, before the terminal", () =>
    withServer(async (server) => {
      onTestFinished(() => proxy.restore())
      const { alice, thread_id } = await freshThread(server)
      const sent = await alice.request({ type: "send_message", thread_id, content: "stall" })
      await alice.waitFor((f) => f.type === "event" && f.event_type === "tool_executing")
      // The tool times out while the database is gone, so its own tool_completed cannot be stored.
      proxy.cut()
      await new Promise((resolve) => setTimeout(resolve, 2000))
      proxy.restore()
      const terminal = await alice.waitRunEnd(sent.run_id, 30_000)
      expect(terminal).toMatchObject({ event_type: "agent_error", data: { code: "unavailable" } })
      const run = await expectEndedAndFree(server, alice, thread_id, sent.run_id)
      const completed = run.filter((e) => e.event_type === "tool_completed")
      expect(completed).toHaveLength(1)
      expect(completed[0]!.data).toMatchObject({ tool_call_id: "stall-1", tool: "stall", error: "interrupted" })
      expect(run.at(-2)).toBe(completed[0])
    }))

  it.effect("closes the open tool call of a cancelled run with tool_completed interrupted", () =>
    withServer(async (server) => {
      const { alice, thread_id } = await freshThread(server)
      const sent = await alice.request({ type: "send_message", thread_id, content: "stall" })
      await alice.waitFor((f) => f.type === "event" && f.event_type === "tool_executing")
      await alice.request({ type: "cancel_run", run_id: sent.run_id })
      const run = await expectEndedAndFree(server, alice, thread_id, sent.run_id)
      expect(run.slice(-2).map((e) => [e.event_type, e.data.error ?? e.data.code])).toEqual([
        ["tool_completed", "interrupted"],
        ["agent_error", "cancelled"]
      ])
    }))
})

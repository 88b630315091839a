/**
 * How a run turns its model's deltas into events: each its own event by
 * default, however fast they come; with DELTA_COALESCE_MS, the deltas that
 * come within it as one event with the text unchanged; and the deltas
 * before a model failure stored before the run's error.
 */
import { describe, expect, layer } from "@effect/vitest"
import { Duration } from "effect"
import type { ChatClient, EventFrame } from "../utils/ChatClient.ts"
import { expectRunShape } from "../utils/invariants.ts"
import { delta, Gate, scriptedModel, thinking } from "../utils/Models.ts"
import { TestServer, withServer } from "../utils/TestServer.ts"

const BURST = 60
const words = Array.from({ length: BURST }, (_, i) => `w${i} `)

const ofRun = (events: ReadonlyArray<EventFrame>, runId: string, type: EventFrame["event_type"]) =>
  events.filter((e) => e.run_id === runId && e.event_type === type)

const textOf = (events: ReadonlyArray<EventFrame>) =>
  events.map((e) => (e.data as { delta?: string; text?: string }).delta ?? (e.data as { text: string }).text).join("")

const ask = async (client: ChatClient, content = "go") => {
  const { thread_id } = await client.request({ type: "create_thread" })
  await client.request({ type: "join_thread", thread_id })
  const sent = await client.request({ type: "send_message", thread_id, content })
  return { threadId: thread_id as string, runId: sent.run_id as string }
}

// A burst far faster than the log stores it: the run's appends each carry many of the model's deltas.
const burstModel = scriptedModel(() => [thinking("a "), thinking("b "), ...words.map(delta)])

layer(TestServer.layer({ model: burstModel }), { excludeTestServices: true, timeout: 60_000 })(
  "without DELTA_COALESCE_MS",
  (it) => {
    it.effect("every delta of the model is an event of its own, in order, however fast they come", () =>
      withServer(async (server) => {
        const alice = await server.connect("alice")
        const { runId, threadId } = await ask(alice)
        await alice.waitRunEnd(runId, 30_000)
        const events = alice.events(threadId)
        expectRunShape(events, runId)
        expect(ofRun(events, runId, "agent_response_delta").map((e) => (e.data as { delta: string }).delta))
          .toEqual(words)
        expect(ofRun(events, runId, "agent_thinking").map((e) => (e.data as { text: string }).text))
          .toEqual(["a ", "b "])
      }))
  }
)

const gate = new Gate()
const pausedModel = scriptedModel(
  () => [thinking("a "), thinking("b "), ...words.map(delta), "gate", delta("last")],
  gate
)

layer(TestServer.layer({ model: pausedModel, config: { deltaCoalesce: Duration.millis(300) } }), {
  excludeTestServices: true,
  timeout: 60_000
})("with DELTA_COALESCE_MS", (it) => {
  it.effect("deltas that come within it are one event, the text unchanged; one after a pause goes at once", () =>
    withServer(async (server) => {
      const alice = await server.connect("alice")
      const { runId, threadId } = await ask(alice)
      // The burst: the first delta goes out at once, the ones behind it wait together.
      await alice.waitFor((f) =>
        f.type === "event" && f.event_type === "agent_response_delta" &&
        (f.data as { delta: string }).delta.endsWith(words.at(-1)!), 10_000)
      const burst = ofRun(alice.events(threadId), runId, "agent_response_delta")
      expect(textOf(burst)).toBe(words.join(""))
      expect(burst.length).toBeLessThanOrEqual(3)
      expect(textOf(ofRun(alice.events(threadId), runId, "agent_thinking"))).toBe("a b ")
      // Long after the window: the next delta is not held back for company.
      await new Promise((resolve) => setTimeout(resolve, 700))
      const released = Date.now()
      gate.allow()
      const last = await alice.waitFor(
        (f) =>
          f.type === "event" && f.event_type === "agent_response_delta" &&
          (f.data as { delta: string }).delta === "last",
        10_000
      )
      // Well inside the window it would have waited, had it waited for company.
      expect(Date.now() - released).toBeLessThan(200)
      expect(last.type === "event" && last.seq).toBe(burst.at(-1)!.seq + 1)
      expect((await alice.waitRunEnd(runId, 30_000)).event_type).toBe("agent_completed")
      expectRunShape(alice.events(threadId), runId)
    }))
})

const failingModel = scriptedModel(() => [...words.map(delta), "fail"])

describe.each([0, 100])("a model failure after a burst, DELTA_COALESCE_MS %i", (coalesce) => {
  layer(TestServer.layer({ model: failingModel, config: { deltaCoalesce: Duration.millis(coalesce) } }), {
    excludeTestServices: true,
    timeout: 60_000
  })("", (it) => {
    it.effect("stores every delta the model sent before the run's error", () =>
      withServer(async (server) => {
        const alice = await server.connect("alice")
        const { runId, threadId } = await ask(alice)
        const end = await alice.waitRunEnd(runId, 30_000)
        expect(end.event_type).toBe("agent_error")
        const events = alice.events(threadId)
        expectRunShape(events, runId)
        expect(textOf(ofRun(events, runId, "agent_response_delta"))).toBe(words.join(""))
      }))
  })
})

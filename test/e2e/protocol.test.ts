import { expect, layer } from "@effect/vitest"
import { expectContiguous, expectRunShape } from "../utils/invariants.ts"
import { TestServer, withServer } from "../utils/TestServer.ts"

layer(TestServer.layer(), { excludeTestServices: true, timeout: 60_000 })("protocol, with the built-in agent", (it) => {
  it.effect("welcomes a connection with its user, protocol and heartbeat", () =>
    withServer(async (server) => {
      const alice = await server.connect("alice")
      const welcome = await alice.waitFor((f) => f.type === "welcome")
      expect(alice.frames[0]).toBe(welcome)
      expect(welcome).toMatchObject({ protocol: 1, user_id: "alice", heartbeat_ms: 25_000 })
      if (welcome.type !== "welcome") throw new Error("unreachable")
      expect(welcome.connection_id).toMatch(/\S+/)
      expect(new Date(welcome.server_time).toISOString()).toBe(welcome.server_time)
    }))

  it.effect("answers ping with pong carrying the ref, and without one when no id was sent", () =>
    withServer(async (server) => {
      const alice = await server.connect("alice")
      alice.send({ type: "ping", id: "p-1" })
      await alice.waitFor((f) => f.type === "pong" && f.ref === "p-1")
      alice.send({ type: "ping" })
      const bare = await alice.waitFor((f) => f.type === "pong" && !("ref" in f))
      expect(bare).toEqual({ type: "pong" })
    }))

  it.effect("runs a message end to end: calculator tool, streamed answer, events in order", () =>
    withServer(async (server) => {
      const alice = await server.connect("alice")
      const { thread_id } = await alice.request({ type: "create_thread", title: "maths" })
      const joined = await alice.request({ type: "join_thread", thread_id })
      expect(joined).toMatchObject({ type: "ack", thread_id, head_seq: 0 })

      const sent = await alice.request({ type: "send_message", thread_id, content: "what is 12 * (3 + 4)?" })
      expect(sent.message_id).toEqual(expect.any(String))
      expect(sent.run_id).toEqual(expect.any(String))
      const terminal = await alice.waitRunEnd(sent.run_id)
      expect(terminal.event_type).toBe("agent_completed")

      const events = alice.events(thread_id)
      expectContiguous(events)
      expect(events[0]).toMatchObject({
        event_type: "message_created",
        run_id: null,
        data: { message_id: sent.message_id, user_id: "alice", content: "what is 12 * (3 + 4)?" }
      })
      const run = expectRunShape(events, sent.run_id)
      expect(run[0]!.data).toMatchObject({ message_id: sent.message_id, agent: "builtin-agent" })
      const types = run.map((e) => e.event_type)
      expect(types).toContain("agent_thinking")
      expect(types.indexOf("agent_thinking")).toBeLessThan(types.indexOf("tool_executing"))
      const completed = run.find((e) => e.event_type === "tool_completed")!
      expect(completed.data).toMatchObject({ tool: "calculator", output: { result: 84 } })
      const deltas = run.filter((e) => e.event_type === "agent_response_delta")
      expect(deltas.length).toBeGreaterThan(1)
      expect(deltas.map((e) => e.data.delta).join("")).toBe(terminal.data.response)
      expect(terminal.data.response).toContain("84")
      expect(terminal.data.duration_ms).toEqual(expect.any(Number))
      for (const event of events) {
        expect(event.event_id).toMatch(/^[0-9a-f-]{36}$/)
        expect(new Date(event.timestamp).toISOString()).toBe(event.timestamp)
      }
    }))

  it.effect("auto-joins the sender's connection on send_message", () =>
    withServer(async (server) => {
      const alice = await server.connect("alice")
      const { thread_id } = await alice.request({ type: "create_thread" })
      const sent = await alice.request({ type: "send_message", thread_id, content: "hello there" })
      const terminal = await alice.waitRunEnd(sent.run_id)
      expect(terminal.event_type).toBe("agent_completed")
      expectContiguous(alice.events(thread_id))
    }))

  it.effect("stops delivering after leave_thread, and joins again with replay", () =>
    withServer(async (server) => {
      const alice = await server.connect("alice")
      const bob = await server.connect("bob")
      const { thread_id } = await alice.request({ type: "create_thread", members: ["bob"] })
      await bob.request({ type: "join_thread", thread_id })
      const first = await alice.request({ type: "send_message", thread_id, content: "hi" })
      await bob.waitRunEnd(first.run_id)
      const seen = bob.events(thread_id).length
      expect(await bob.request({ type: "leave_thread", thread_id })).toMatchObject({ thread_id })
      const second = await alice.request({ type: "send_message", thread_id, content: "what time is it?" })
      await alice.waitRunEnd(second.run_id)
      expect(bob.events(thread_id)).toHaveLength(seen)
      const rejoined = await bob.request({ type: "join_thread", thread_id, after_seq: seen })
      expect(rejoined.head_seq).toBe(alice.events(thread_id).length)
      await bob.waitRunEnd(second.run_id)
      expectContiguous(bob.events(thread_id))
      expect(bob.events(thread_id).map((e) => e.event_id)).toEqual(alice.events(thread_id).map((e) => e.event_id))
    }))

  it.effect("answers a question about earlier messages with the search_thread tool over the stored history", () =>
    withServer(async (server) => {
      const alice = await server.connect("alice")
      const { thread_id } = await alice.request({ type: "create_thread" })
      const first = await alice.request({
        type: "send_message",
        thread_id,
        content: "The budget for the trip is 500 euros"
      })
      await alice.waitRunEnd(first.run_id)
      const second = await alice.request({
        type: "send_message",
        thread_id,
        content: "What did I say earlier about the budget?"
      })
      const terminal = await alice.waitRunEnd(second.run_id)
      const run = expectRunShape(alice.events(thread_id), second.run_id)
      const completed = run.find((e) => e.event_type === "tool_completed")!
      expect(completed.data.tool).toBe("search_thread")
      expect(completed.data.output.matches.map((m: { content: string }) => m.content)).toEqual([
        "The budget for the trip is 500 euros"
      ])
      expect(terminal.data.response).toContain("500 euros")
    }))

  it.effect("answers the time with the clock tool", () =>
    withServer(async (server) => {
      const alice = await server.connect("alice")
      const { thread_id } = await alice.request({ type: "create_thread" })
      const sent = await alice.request({ type: "send_message", thread_id, content: "What time is it in Europe/Paris?" })
      const terminal = await alice.waitRunEnd(sent.run_id)
      const run = expectRunShape(alice.events(thread_id), sent.run_id)
      const completed = run.find((e) => e.event_type === "tool_completed")!
      expect(completed.data).toMatchObject({ tool: "clock", output: { timezone: "Europe/Paris" } })
      expect(terminal.data.response).toContain(completed.data.output.local)
    }))
})

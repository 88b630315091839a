import { expect, layer } from "@effect/vitest"
import { RequestFailed } from "../utils/ChatClient.ts"
import { expectContiguous, expectRunShape } from "../utils/invariants.ts"
import { Gate, gatedModel } from "../utils/Models.ts"
import { TestServer, withServer } from "../utils/TestServer.ts"

const gate = new Gate()

const failure = (promise: Promise<unknown>) =>
  promise.then(() => {
    throw new Error("expected the request to fail")
  }, (error: unknown) => {
    if (!(error instanceof RequestFailed)) throw error
    return error
  })

layer(TestServer.layer({ model: gatedModel(gate, 5) }), { excludeTestServices: true, timeout: 60_000 })(
  "runs under the supervisor",
  (it) => {
    it.effect("refuses a second message while a run is active (busy) and stores nothing for it", () =>
      withServer(async (server) => {
        const alice = await server.connect("alice")
        const { thread_id } = await alice.request({ type: "create_thread" })
        const first = await alice.request({ type: "send_message", thread_id, content: "first" })
        await alice.waitFor((f) => f.type === "event" && f.event_type === "agent_thinking" && f.run_id === first.run_id)
        const busy = await failure(alice.request({ type: "send_message", thread_id, content: "second" }))
        expect(busy.code).toBe("busy")
        gate.allow(5)
        await alice.waitRunEnd(first.run_id)
        const messages = alice.events(thread_id).filter((e) => e.event_type === "message_created")
        expect(messages.map((e) => e.data.content)).toEqual(["first"])
        const after = await alice.request({ type: "send_message", thread_id, content: "third" })
        gate.allow(5)
        expect((await alice.waitRunEnd(after.run_id)).event_type).toBe("agent_completed")
      }))

    it.effect("cancel_run from another member's connection ends the run with agent_error cancelled", () =>
      withServer(async (server) => {
        const alice = await server.connect("alice")
        const bob = await server.connect("bob")
        const { thread_id } = await alice.request({ type: "create_thread", members: ["bob"] })
        await bob.request({ type: "join_thread", thread_id })
        const sent = await alice.request({ type: "send_message", thread_id, content: "long one" })
        gate.allow(2)
        await bob.waitFor((f) =>
          f.type === "event" && f.event_type === "agent_response_delta" && f.data.delta === "part2 "
        )
        expect(await bob.request({ type: "cancel_run", run_id: sent.run_id })).toMatchObject({ run_id: sent.run_id })
        const terminal = await alice.waitRunEnd(sent.run_id)
        expect(terminal).toMatchObject({ event_type: "agent_error", data: { code: "cancelled" } })
        expectRunShape(alice.events(thread_id), sent.run_id)
        expectContiguous(alice.events(thread_id))
        // An ended run cannot be cancelled again, and the thread is free.
        expect((await failure(bob.request({ type: "cancel_run", run_id: sent.run_id }))).code).toBe("not_found")
        expect((await failure(bob.request({ type: "cancel_run", run_id: "no-such-run" }))).code).toBe("not_found")
        const next = await alice.request({ type: "send_message", thread_id, content: "again" })
        gate.allow(5)
        expect((await alice.waitRunEnd(next.run_id)).event_type).toBe("agent_completed")
      }))

    it.effect("keeps a run going when its sender disconnects", () =>
      withServer(async (server) => {
        const alice = await server.connect("alice")
        const bob = await server.connect("bob")
        const { thread_id } = await alice.request({ type: "create_thread", members: ["bob"] })
        await bob.request({ type: "join_thread", thread_id })
        const sent = await alice.request({ type: "send_message", thread_id, content: "keep going" })
        await bob.waitFor((f) => f.type === "event" && f.event_type === "agent_thinking" && f.run_id === sent.run_id)
        alice.close()
        await alice.waitClose()
        gate.allow(5)
        const terminal = await bob.waitRunEnd(sent.run_id)
        expect(terminal.event_type).toBe("agent_completed")
        expect(terminal.data.response).toBe("part1 part2 part3 part4 part5 ")
      }))

    it.effect("completes a run that no connection is watching, and stores every event", () =>
      withServer(async (server) => {
        const alice = await server.connect("alice")
        const { thread_id } = await alice.request({ type: "create_thread" })
        const sent = await alice.request({ type: "send_message", thread_id, content: "nobody listens" })
        alice.close()
        await alice.waitClose()
        gate.allow(5)
        const deadline = Date.now() + 10_000
        let body: { events: Array<{ event_type: string; seq: number }>; head_seq: number }
        do {
          const response = await server.fetch(`/api/threads/${thread_id}/events`, { userId: "alice" })
          body = await response.json()
        } while (body.events.at(-1)?.event_type !== "agent_completed" && Date.now() < deadline)
        expect(body.events.at(-1)?.event_type).toBe("agent_completed")
        expect(body.events.map((e) => e.seq)).toEqual(body.events.map((_, i) => i + 1))
        expect(body.head_seq).toBe(body.events.length)
        expect(sent.run_id).toEqual(expect.any(String))
      }))

    it.effect("replays what a reconnecting client missed during a streaming run, exactly once", () =>
      withServer(async (server) => {
        const alice = await server.connect("alice")
        const { thread_id } = await alice.request({ type: "create_thread" })
        const sent = await alice.request({ type: "send_message", thread_id, content: "stream it" })
        gate.allow(2)
        await alice.waitFor((f) =>
          f.type === "event" && f.event_type === "agent_response_delta" && f.data.delta === "part2 "
        )
        const seen = alice.events(thread_id)
        alice.ws.terminate()
        await alice.waitClose()
        gate.allow(1)

        const again = await server.connect("alice")
        const lastSeq = seen.at(-1)!.seq
        const joined = await again.request({ type: "join_thread", thread_id, after_seq: lastSeq })
        expect(joined.head_seq).toBeGreaterThanOrEqual(lastSeq)
        gate.allow(2)
        await again.waitRunEnd(sent.run_id)
        const all = [...seen, ...again.events(thread_id)]
        expectContiguous(all)
        expectRunShape(all, sent.run_id)
        expect(all.filter((e) => e.event_type === "agent_response_delta").map((e) => e.data.delta).join(""))
          .toBe("part1 part2 part3 part4 part5 ")
      }))

    it.effect("joins mid-run without after_seq: only live events, starting after the head", () =>
      withServer(async (server) => {
        const alice = await server.connect("alice")
        const bob = await server.connect("bob")
        const { thread_id } = await alice.request({ type: "create_thread", members: ["bob"] })
        const sent = await alice.request({ type: "send_message", thread_id, content: "go" })
        gate.allow(1)
        await alice.waitFor((f) => f.type === "event" && f.event_type === "agent_response_delta")
        const joined = await bob.request({ type: "join_thread", thread_id })
        gate.allow(4)
        await bob.waitRunEnd(sent.run_id)
        const events = bob.events(thread_id)
        expectContiguous(events, joined.head_seq + 1)
      }))
  }
)

/**
 * Membership changes (docs/PROTOCOL.md section 2, `add_members` and
 * `remove_members`): who may make them, the `members_changed` event each
 * stores, and a removed member cut off at once, that event his last.
 */
import { expect, layer } from "@effect/vitest"
import { makeTestConfig } from "../../src/config/AppConfig.ts"
import { type EventFrame, RequestFailed } from "../utils/ChatClient.ts"
import { expectContiguous } from "../utils/invariants.ts"
import { TestServer, withServer } from "../utils/TestServer.ts"

const codeOf = (promise: Promise<unknown>) =>
  promise.then(() => "ok", (error: unknown) => error instanceof RequestFailed ? error.code : String(error))

const settle = () => new Promise((resolve) => setTimeout(resolve, 200))

layer(TestServer.layer({ config: { limits: { ...makeTestConfig().limits, membersPerThread: 4 } } }), {
  excludeTestServices: true,
  timeout: 60_000
})("thread members", (it) => {
  it.effect("a removed member's connections get members_changed last, then nothing more of the thread", () =>
    withServer(async (server) => {
      const alice = await server.connect("alice")
      const bob = [await server.connect("bob"), await server.connect("bob")]
      const { thread_id } = await alice.request({ type: "create_thread", members: ["bob"] })
      await alice.request({ type: "join_thread", thread_id })
      for (const client of bob) await client.request({ type: "join_thread", thread_id })
      const before = await alice.request({ type: "send_message", thread_id, content: "what is 2+2" })
      await bob[0]!.waitRunEnd(before.run_id)

      expect(await alice.request({ type: "remove_members", thread_id, user_ids: ["bob"] })).toMatchObject({ thread_id })
      const change = await alice.waitFor((f): f is EventFrame =>
        f.type === "event" && f.event_type === "members_changed"
      )
      expect(change).toMatchObject({ run_id: null, data: { added: [], removed: ["bob"], by: "alice" } })
      const after = await alice.request({ type: "send_message", thread_id, content: "what is 3+3" })
      await alice.waitRunEnd(after.run_id)
      await settle()
      for (const client of bob) {
        const seen = client.events(thread_id)
        expect(seen.at(-1)?.event_id).toBe(change.event_id)
        expect(seen.some((e) => e.run_id === after.run_id)).toBe(false)
        expectContiguous(seen)
        expect(client.ws.readyState).toBe(client.ws.OPEN)
      }
      // And he can no longer join, post, read the history or see the thread.
      expect(await codeOf(bob[0]!.request({ type: "join_thread", thread_id, after_seq: 0 }))).toBe("not_found")
      expect(await codeOf(bob[0]!.request({ type: "send_message", thread_id, content: "hi" }))).toBe("not_found")
      expect((await server.fetch(`/api/threads/${thread_id}/events`, { userId: "bob" })).status).toBe(404)
      expect((await server.fetch(`/api/threads/${thread_id}`, { userId: "bob" })).status).toBe(404)
      // The change replays like every event.
      const replayed = await server.connect("alice")
      await replayed.request({ type: "join_thread", thread_id, after_seq: 0 })
      await replayed.waitRunEnd(after.run_id)
      expect(replayed.events(thread_id).map((e) => e.event_id)).toEqual(alice.events(thread_id).map((e) => e.event_id))
    }))

  it.effect("a member added gets the thread: he may join and replay it, and GET /api/threads/{id} lists him", () =>
    withServer(async (server) => {
      const alice = await server.connect("alice")
      const carol = await server.connect("carol")
      const { thread_id } = await alice.request({ type: "create_thread", title: "plans" })
      expect(await codeOf(carol.request({ type: "join_thread", thread_id }))).toBe("not_found")
      await alice.request({ type: "add_members", thread_id, user_ids: ["carol", "dave", "carol"] })
      const joined = await carol.request({ type: "join_thread", thread_id, after_seq: 0 })
      expect(joined.head_seq).toBe(1)
      const change = await carol.waitFor((f) => f.type === "event" && f.event_type === "members_changed")
      expect(change).toMatchObject({ seq: 1, data: { added: ["carol", "dave"], removed: [], by: "alice" } })
      const details = await (await server.fetch(`/api/threads/${thread_id}`, { userId: "carol" })).json()
      expect(details).toMatchObject({
        thread_id,
        title: "plans",
        created_by: "alice",
        head_seq: 1,
        members: ["alice", "carol", "dave"]
      })
      // A change that changes nothing is acknowledged and stores nothing.
      await alice.request({ type: "add_members", thread_id, user_ids: ["carol"] })
      await alice.request({ type: "remove_members", thread_id, user_ids: ["nobody"] })
      expect((await (await server.fetch(`/api/threads/${thread_id}`, { userId: "alice" })).json()).head_seq).toBe(1)
    }))

  it.effect("the creator changes anyone; another member may only remove himself; others see nothing", () =>
    withServer(async (server) => {
      const alice = await server.connect("alice")
      const bob = await server.connect("bob")
      const eve = await server.connect("eve")
      const { thread_id } = await alice.request({ type: "create_thread", members: ["bob", "carol"] })
      expect(await codeOf(bob.request({ type: "add_members", thread_id, user_ids: ["dave"] }))).toBe("forbidden")
      expect(await codeOf(bob.request({ type: "remove_members", thread_id, user_ids: ["carol"] }))).toBe("forbidden")
      expect(await codeOf(eve.request({ type: "add_members", thread_id, user_ids: ["eve"] }))).toBe("not_found")
      expect(await codeOf(eve.request({ type: "remove_members", thread_id, user_ids: ["bob"] }))).toBe("not_found")
      expect(await codeOf(bob.request({ type: "remove_members", thread_id, user_ids: ["bob"] }))).toBe("ok")
      expect(await codeOf(bob.request({ type: "join_thread", thread_id }))).toBe("not_found")
      // The limit counts the creator: alice and carol, then two more at most.
      expect(await codeOf(alice.request({ type: "add_members", thread_id, user_ids: ["d", "e", "f"] })))
        .toBe("invalid_message")
      expect(await codeOf(alice.request({ type: "add_members", thread_id, user_ids: ["d", "e"] }))).toBe("ok")
      const details = await (await server.fetch(`/api/threads/${thread_id}`, { userId: "alice" })).json()
      expect(details.members).toEqual(["alice", "carol", "d", "e"])
      expect(await codeOf(alice.request({ type: "add_members", thread_id, user_ids: [] }))).toBe("invalid_message")
      expect(await codeOf(alice.request({ type: "add_members", thread_id, user_ids: ["x\u0000"] })))
        .toBe("invalid_message")
    }))
})

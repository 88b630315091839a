/**
 * Presence on one node (docs/PROTOCOL.md section 2, "Presence"): the ack's
 * `online`, `presence` frames on every change and only then, members added
 * and removed, a connection that left the thread told nothing, and nothing
 * of it stored. Across nodes: test/e2e/nodes.test.ts.
 */
import { expect, layer } from "@effect/vitest"
import type { ChatClient, ServerFrame } from "../utils/ChatClient.ts"
import { TestServer, withServer } from "../utils/TestServer.ts"

type PresenceFrame = Extract<ServerFrame, { readonly type: "presence" }>

const presenceOf = (client: ChatClient, threadId: string) =>
  client.frames.filter((f): f is PresenceFrame => f.type === "presence" && f.thread_id === threadId)

/** Waits for the connection's presence frames of the thread to be exactly `lists`. */
const told = (client: ChatClient, threadId: string, lists: ReadonlyArray<ReadonlyArray<string>>) =>
  client.until(() => presenceOf(client, threadId).length >= lists.length ? true : undefined, 10_000, "presence")
    .then(() => expect(presenceOf(client, threadId).map((f) => f.online)).toEqual(lists))

/** User ids of one test, so connections other tests leave closing count for nothing here. */
let tests = 0
const users = () => {
  const n = ++tests
  return (name: string) => `${name}-${n}`
}

layer(TestServer.layer(), { excludeTestServices: true, timeout: 60_000 })("presence", (it) => {
  it.effect("join_thread's ack lists the members connected, the caller included, sorted; not absent members or others", () =>
    withServer(async (server) => {
      const u = users()
      const carol = await server.connect(u("carol"))
      const { thread_id } = await carol.request({ type: "create_thread", members: [u("bob"), u("alice"), u("dave")] })
      await carol.close()
      await server.connect(u("bob"))
      await server.connect(u("mallory"))
      const alice = await server.connect(u("alice"))
      const ack = await alice.request({ type: "join_thread", thread_id })
      expect(ack.online).toEqual([u("alice"), u("bob")])
    }))

  it.effect("a joined connection gets the whole new list at each change, after its ack, never the same list twice", () =>
    withServer(async (server) => {
      const u = users()
      const alice = await server.connect(u("alice"))
      const { thread_id } = await alice.request({ type: "create_thread", members: [u("bob")] })
      const ack = await alice.request({ type: "join_thread", thread_id })
      expect(ack.online).toEqual([u("alice")])
      const bob = await server.connect(u("bob"))
      await told(alice, thread_id, [[u("alice"), u("bob")]])
      // A second connection of bob's, and closing one of two, change nothing.
      const bobAgain = await server.connect(u("bob"))
      await bobAgain.close()
      await bob.close()
      await told(alice, thread_id, [[u("alice"), u("bob")], [u("alice")]])
      const ackAt = alice.frames.findIndex((f) => f.type === "ack" && f.ref !== undefined && f.thread_id === thread_id)
      const firstPresence = alice.frames.findIndex((f) => f.type === "presence")
      expect(firstPresence).toBeGreaterThan(ackAt)
      // Ephemeral: nothing of it is stored, so a replay of the thread has no events at all.
      const replay = await server.fetch(`/api/threads/${thread_id}/events?after_seq=0`, { userId: u("alice") })
      expect(await replay.json()).toEqual({ events: [], head_seq: 0 })
    }))

  it.effect("members added or removed change the list; a non-member coming or going does not", () =>
    withServer(async (server) => {
      const u = users()
      const alice = await server.connect(u("alice"))
      const { thread_id } = await alice.request({ type: "create_thread" })
      await alice.request({ type: "join_thread", thread_id })
      const carol = await server.connect(u("carol"))
      await server.connect(u("mallory"))
      await alice.request({ type: "add_members", thread_id, user_ids: [u("carol")] })
      await told(alice, thread_id, [[u("alice"), u("carol")]])
      await alice.request({ type: "remove_members", thread_id, user_ids: [u("carol")] })
      await told(alice, thread_id, [[u("alice"), u("carol")], [u("alice")]])
      // Carol, no longer a member, leaves: alice hears nothing; bob, added, comes: she hears that.
      await carol.close()
      await alice.request({ type: "add_members", thread_id, user_ids: [u("bob")] })
      await server.connect(u("bob"))
      await told(alice, thread_id, [[u("alice"), u("carol")], [u("alice")], [u("alice"), u("bob")]])
    }))

  it.effect("a connection that left the thread, or never joined it, gets no presence frames of it", () =>
    withServer(async (server) => {
      const u = users()
      const alice = await server.connect(u("alice"))
      const { thread_id } = await alice.request({ type: "create_thread", members: [u("bob")] })
      const watcher = await server.connect(u("alice"))
      await watcher.request({ type: "join_thread", thread_id })
      await alice.request({ type: "join_thread", thread_id })
      await alice.request({ type: "leave_thread", thread_id })
      const bystander = await server.connect(u("alice"))
      await server.connect(u("bob"))
      await told(watcher, thread_id, [[u("alice"), u("bob")]])
      expect(presenceOf(alice, thread_id)).toEqual([])
      expect(presenceOf(bystander, thread_id)).toEqual([])
    }))
})

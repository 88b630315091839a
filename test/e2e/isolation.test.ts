import { expect, layer } from "@effect/vitest"
import { RequestFailed } from "../utils/ChatClient.ts"
import { expectContiguous } from "../utils/invariants.ts"
import { TestServer, withServer } from "../utils/TestServer.ts"

const codeOf = (promise: Promise<unknown>) =>
  promise.then(() => "ok", (error: unknown) => error instanceof RequestFailed ? error.code : String(error))

layer(TestServer.layer(), { excludeTestServices: true, timeout: 60_000 })("isolation between users", (it) => {
  it.effect("delivers a thread's events to its members' connections only", () =>
    withServer(async (server) => {
      const alice = [await server.connect("alice"), await server.connect("alice")]
      const bob = await server.connect("bob")
      const carol = [await server.connect("carol"), await server.connect("carol")]
      const shared = (await alice[0]!.request({ type: "create_thread", members: ["bob"] })).thread_id
      const secret = (await carol[0]!.request({ type: "create_thread", title: "carol only" })).thread_id

      await alice[1]!.request({ type: "join_thread", thread_id: shared })
      await bob.request({ type: "join_thread", thread_id: shared })
      await carol[1]!.request({ type: "join_thread", thread_id: secret })
      for (const client of carol) {
        expect(await codeOf(client.request({ type: "join_thread", thread_id: shared }))).toBe("not_found")
        expect(await codeOf(client.request({ type: "send_message", thread_id: shared, content: "let me in" })))
          .toBe("not_found")
      }
      expect(await codeOf(bob.request({ type: "join_thread", thread_id: secret }))).toBe("not_found")

      const runs = await Promise.all([
        alice[0]!.request({ type: "send_message", thread_id: shared, content: "what is 6*7" }),
        carol[0]!.request({ type: "send_message", thread_id: secret, content: "what time is it" })
      ])
      await Promise.all([alice[1]!.waitRunEnd(runs[0].run_id), carol[1]!.waitRunEnd(runs[1].run_id)])
      await bob.waitRunEnd(runs[0].run_id)
      // Carol's run cannot be cancelled, or even seen, by Alice.
      expect(await codeOf(alice[0]!.request({ type: "cancel_run", run_id: runs[1].run_id }))).toBe("not_found")

      for (const client of [...alice, bob]) {
        expect(client.events(secret)).toEqual([])
        expect(client.events().every((e) => e.thread_id === shared)).toBe(true)
      }
      for (const client of carol) {
        expect(client.events(shared)).toEqual([])
        expect(client.events().every((e) => e.thread_id === secret)).toBe(true)
      }
      expectContiguous(bob.events(shared))
      expect(bob.events(shared).map((e) => e.event_id)).toEqual(alice[1]!.events(shared).map((e) => e.event_id))
    }))

  it.effect("lists and serves over HTTP only the threads the caller belongs to", () =>
    withServer(async (server) => {
      const dave = await server.connect("dave")
      const mine = (await dave.request({ type: "create_thread", title: "dave's" })).thread_id
      const erin = await server.connect("erin")
      const hers = (await erin.request({ type: "create_thread", title: "erin's" })).thread_id

      const list = await (await server.fetch("/api/threads", { userId: "dave" })).json()
      expect(list.threads.map((t: { thread_id: string }) => t.thread_id)).toEqual([mine])
      expect(list.threads[0]).toMatchObject({ title: "dave's", head_seq: 0, created_at: expect.any(String) })
      const forbidden = await server.fetch(`/api/threads/${hers}/events`, { userId: "dave" })
      expect(forbidden.status).toBe(404)
      const missing = await server.fetch("/api/threads/nope/events", { userId: "dave" })
      expect(missing.status).toBe(404)
      expect(await forbidden.json()).toEqual(await missing.json())
    }))
})

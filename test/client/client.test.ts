/**
 * The SDK against a real server (the built-in agent): a run's events and
 * its `done`, typed; presence and members changes as typed updates; the
 * Effect API beside the promises; requests refused before sending.
 */
import { expect, layer } from "@effect/vitest"
import { Chunk, Effect, Stream } from "effect"
import { AgentChat, type AgentChatClient, connect, RequestError, type ThreadUpdate } from "../../src/client/index.ts"
import { TestServer, withServer } from "../utils/TestServer.ts"
import { sign } from "../utils/tokens.ts"
import { until } from "../utils/until.ts"

let tests = 0
const users = () => {
  const n = ++tests
  return (name: string) => `sdk-${name}-${n}`
}

const open: Array<AgentChatClient> = []
const client = async (url: string, userId: string) => {
  const c = await connect({ url, token: () => sign(userId) })
  open.push(c)
  return c
}
const closeAll = () => open.splice(0).forEach((c) => c.close())

layer(TestServer.layer(), { excludeTestServices: true, timeout: 60_000 })("typed client", (it) => {
  it.effect("creates a thread, sends, streams the run's typed events and resolves done with the answer", () =>
    withServer(async (server) => {
      const u = users()
      const alice = await client(server.wsUrl, u("alice"))
      expect(alice.userId).toBe(u("alice"))
      const thread = await alice.createThread({ title: "Sums" })
      const run = await thread.send("what is 2+2")
      expect(run.runId).toMatch(/./)
      let streamed = ""
      const types: Array<string> = []
      for await (const event of run.events) {
        types.push(event.event_type)
        if (event.event_type === "agent_response_delta") streamed += event.data.delta
      }
      const end = await run.done
      if (end.event_type !== "agent_completed") throw new Error(`run failed: ${JSON.stringify(end.data)}`)
      expect(end.data.response).toContain("4")
      expect(streamed).toBe(end.data.response)
      expect(types[0]).toBe("agent_started")
      expect(types.at(-1)).toBe("agent_completed")
      // The thread delivered every event once, in seq order, the message included.
      expect(thread.lastSeq).toBe(types.length + 1)
      closeAll()
    }))

  it.effect("a second client joining later replays the thread from seq 1", () =>
    withServer(async (server) => {
      const u = users()
      const alice = await client(server.wsUrl, u("alice"))
      const thread = await alice.createThread({ members: [u("bob")] })
      await (await thread.send("what is 3*3")).done
      const bob = await client(server.wsUrl, u("bob"))
      const seen: Array<number> = []
      bob.on((e) => e.type === "event" && seen.push(e.seq))
      const joined = await bob.join(thread.id)
      await until(async () => joined.lastSeq === thread.lastSeq, "joined.lastSeq === thread.lastSeq")
      expect(seen).toEqual(Array.from({ length: thread.lastSeq }, (_, i) => i + 1))
      closeAll()
    }))

  it.effect("presence (the join ack's online, then presence frames) and members_changed arrive as typed updates", () =>
    withServer(async (server) => {
      const u = users()
      const alice = await client(server.wsUrl, u("alice"))
      const updates: Array<ThreadUpdate> = []
      const thread = await alice.createThread()
      thread.on((update) => updates.push(update))
      expect(thread.online).toEqual([u("alice")])
      await thread.addMembers([u("bob")])
      const bob = await client(server.wsUrl, u("bob"))
      await until(async () => thread.online.length === 2, "thread.online.length === 2")
      expect(thread.online).toEqual([u("alice"), u("bob")].sort())
      bob.close()
      await until(async () => thread.online.length === 1, "thread.online.length === 1")
      const members = updates.flatMap((x) => x.type === "event" && x.event_type === "members_changed" ? [x.data] : [])
      expect(members).toEqual([{ added: [u("bob")], removed: [], by: u("alice") }])
      const presence = updates.flatMap((x) => x.type === "presence" ? [x.online] : [])
      expect(presence).toEqual([[u("alice"), u("bob")].sort(), [u("alice")]])
      closeAll()
    }))

  it.effect("a member removed stops hearing the thread, and is not rejoined", () =>
    withServer(async (server) => {
      const u = users()
      const alice = await client(server.wsUrl, u("alice"))
      const thread = await alice.createThread({ members: [u("bob")] })
      const bob = await client(server.wsUrl, u("bob"))
      const bobs = await bob.join(thread.id)
      await thread.removeMembers([u("bob")])
      await until(async () => !bobs.joined, "!bobs.joined")
      closeAll()
    }))

  it.effect("refuses a frame off the protocol's Schema before sending it, and passes the server's errors", () =>
    withServer(async (server) => {
      const u = users()
      const alice = await client(server.wsUrl, u("alice"))
      const thread = await alice.createThread()
      await expect(thread.send("")).rejects.toMatchObject({ _tag: "RequestError", code: "invalid_message" })
      await expect(alice.join("no-such-thread")).rejects.toBeInstanceOf(RequestError)
      await expect(alice.join("no-such-thread")).rejects.toMatchObject({ code: "not_found" })
      closeAll()
    }))

  it.effect("a first connection refused (a bad token) rejects connect with ConnectError", () =>
    withServer(async (server) => {
      await expect(connect({ url: server.wsUrl, token: "not-a-jwt" })).rejects.toMatchObject({ _tag: "ConnectError" })
    }))

  it.effect("the Effect API: a scoped client, a run as a Stream, done as an Effect", () =>
    withServer((server) =>
      Effect.runPromise(Effect.scoped(Effect.gen(function*() {
        const u = users()
        const chat = yield* AgentChat.connect({ url: server.wsUrl, token: () => sign(u("alice")) })
        const thread = yield* AgentChat.createThread(chat)
        const run = yield* AgentChat.send(thread, "what is 5+5")
        const events = yield* Stream.runCollect(AgentChat.runEvents(run))
        const end = yield* AgentChat.done(run)
        expect(Chunk.last(events).pipe((last) => last._tag === "Some" ? last.value : undefined)).toBe(end)
        expect(end.event_type).toBe("agent_completed")
        const failed = yield* Effect.flip(AgentChat.join(chat, "nowhere"))
        expect(failed._tag).toBe("RequestError")
        return chat
      }))).then((chat) => expect(chat.state).toBe("closed"))
    ))
})

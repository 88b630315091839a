import { expect, layer } from "@effect/vitest"
import { Duration, Effect } from "effect"
import { Hub } from "../../src/gateway/Hub.ts"
import { expectContiguous, expectRunShape } from "../utils/invariants.ts"
import { delta, scriptedModel } from "../utils/Models.ts"
import { service, TestServer, withServer } from "../utils/TestServer.ts"

const PIECES = 400
const PIECE = "y".repeat(64 * 1024)

/** A model that answers with a lot of data: enough to fill a stalled client's socket buffers. */
const floodModel = scriptedModel(() => Array.from({ length: PIECES }, () => delta(PIECE)))

layer(TestServer.layer({ model: floodModel, config: { outboxCapacity: 16 } }), {
  excludeTestServices: true,
  timeout: 120_000
})("delivery to a slow client", (it) => {
  it.effect("closes a stalled client with 1013 without holding others back; it then recovers by replay", () =>
    withServer(async (server) => {
      const alice = await server.connect("alice")
      const bob = await server.connect("bob")
      const { thread_id } = await alice.request({ type: "create_thread", members: ["bob"] })
      await alice.request({ type: "join_thread", thread_id })
      await bob.request({ type: "join_thread", thread_id })
      // Alice stops reading: her kernel buffers fill, then her outbox, then the server gives up on her.
      const socket = (alice.ws as unknown as { _socket: import("node:net").Socket })._socket
      socket.pause()
      const sent = await bob.request({ type: "send_message", thread_id, content: "flood" }, 30_000)
      const terminal = await bob.waitRunEnd(sent.run_id, 60_000)
      expect(terminal.event_type).toBe("agent_completed")
      expectRunShape(bob.events(thread_id), sent.run_id)
      expectContiguous(bob.events(thread_id))
      socket.resume()
      expect((await alice.waitClose(30_000)).code).toBe(1013)
      const seen = alice.events(thread_id)
      expect(seen.length).toBeLessThan(bob.events(thread_id).length)
      expectContiguous(seen)

      const again = await server.connect("alice")
      await again.request({ type: "join_thread", thread_id, after_seq: seen.at(-1)?.seq ?? 0 })
      await again.waitRunEnd(sent.run_id, 30_000)
      const all = [...seen, ...again.events(thread_id)]
      expect(all.map((e) => e.event_id)).toEqual(bob.events(thread_id).map((e) => e.event_id))
    }))
})

layer(TestServer.layer({ config: { heartbeat: Duration.millis(100) } }), {
  excludeTestServices: true,
  timeout: 60_000
})("heartbeat and release", (it) => {
  it.effect("terminates a connection that stops answering pings, and keeps one that answers", () =>
    withServer(async (server) => {
      const silent = await server.connect("alice", { wsOptions: { autoPong: false } })
      const healthy = await server.connect("bob")
      const close = await silent.waitClose(5_000)
      expect(close.code).toBe(1006)
      expect(healthy.closed).toBeUndefined()
      healthy.send({ type: "ping", id: "alive" })
      await healthy.waitFor((f) => f.type === "pong" && f.ref === "alive")
    }))

  it.effect("releases a connection's registration and joins when it closes", () =>
    withServer(async (server) => {
      const hub = service(server, Hub)
      const before = await Effect.runPromise(hub.stats)
      const carol = await server.connect("carol")
      const { thread_id } = await carol.request({ type: "create_thread" })
      await carol.request({ type: "join_thread", thread_id })
      const during = await Effect.runPromise(hub.stats)
      expect(during.connections).toBe(before.connections + 1)
      expect(during.subscriptions).toBe(before.subscriptions + 1)
      carol.close()
      await carol.waitClose()
      const deadline = Date.now() + 5_000
      // The release runs when the server sees the close, a moment after the client does.
      let after = await Effect.runPromise(hub.stats)
      while (after.connections !== before.connections && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 20))
        after = await Effect.runPromise(hub.stats)
      }
      expect(after).toEqual(before)
    }))
})

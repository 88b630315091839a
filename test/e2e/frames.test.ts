import { expect, layer } from "@effect/vitest"
import { TestServer, withServer } from "../utils/TestServer.ts"

const MAX_FRAME = 32 * 1024

layer(TestServer.layer({ config: { maxFrameBytes: MAX_FRAME } }), { excludeTestServices: true, timeout: 60_000 })(
  "bad frames",
  (it) => {
    it.effect("answers each malformed frame with invalid_message naming the problem, and stays open", () =>
      withServer(async (server) => {
        const alice = await server.connect("alice")
        const { thread_id } = await alice.request({ type: "create_thread" })
        const cases: Array<[string, string | undefined, RegExp]> = [
          ["{not json", undefined, /not valid JSON/],
          ["[1,2]", undefined, /JSON object/],
          ["42", undefined, /JSON object/],
          [JSON.stringify({ id: "a1" }), "a1", /"type"/],
          [JSON.stringify({ type: "dance", id: "a2" }), "a2", /unknown type "dance"/],
          [JSON.stringify({ type: 7, id: "a3" }), "a3", /"type"/],
          [JSON.stringify({ type: "create_thread" }), undefined, /"id"/],
          [JSON.stringify({ type: "join_thread", id: "a4", thread_id: 5 }), "a4", /thread_id/],
          [JSON.stringify({ type: "join_thread", id: "a5", thread_id, after_seq: -1 }), "a5", /after_seq/],
          [JSON.stringify({ type: "join_thread", id: "a6", thread_id, after_seq: 1.5 }), "a6", /after_seq/],
          [JSON.stringify({ type: "send_message", id: "a7", thread_id, content: "" }), "a7", /content/],
          [JSON.stringify({ type: "send_message", id: "a8", thread_id, content: "x".repeat(16_001) }), "a8", /content/],
          [JSON.stringify({ type: "send_message", id: "a9", thread_id }), "a9", /content/],
          [JSON.stringify({ type: "cancel_run", id: "b1", run_id: 12 }), "b1", /run_id/],
          [JSON.stringify({ type: "create_thread", id: "b2", title: "t".repeat(201) }), "b2", /title/],
          [JSON.stringify({ type: "create_thread", id: "b3", members: "bob" }), "b3", /members/],
          [JSON.stringify({ type: "ping", id: 3 }), undefined, /"id"/],
          [JSON.stringify({ type: "ping", id: "x".repeat(65) }), undefined, /"id"/]
        ]
        for (const [frame, ref, message] of cases) {
          const before = alice.frames.length
          alice.send(frame)
          const reply = await alice.waitFor((f) => alice.frames.indexOf(f) >= before && f.type === "error")
          expect(reply, frame).toMatchObject({ type: "error", code: "invalid_message" })
          if (reply.type !== "error") throw new Error("unreachable")
          expect(reply.ref, frame).toBe(ref)
          expect(reply.message, frame).toMatch(message)
        }
        alice.ws.send(Buffer.from([1, 2, 3]), { binary: true })
        const binary = await alice.waitFor((f) => f.type === "error" && /binary/.test(f.message))
        expect(binary).toMatchObject({ code: "invalid_message" })
        alice.send({ type: "ping", id: "still-open" })
        await alice.waitFor((f) => f.type === "pong" && f.ref === "still-open")
        expect(alice.closed).toBeUndefined()
      }))

    it.effect("answers a thread it cannot see with not_found, the same as a missing one", () =>
      withServer(async (server) => {
        const alice = await server.connect("alice")
        for (const type of ["join_thread", "leave_thread", "send_message"]) {
          alice.send({ type, id: `nf-${type}`, thread_id: "no-such-thread", content: "x" })
          const reply = await alice.waitFor((f) => f.type === "error" && f.ref === `nf-${type}`)
          expect(reply).toMatchObject({ code: "not_found" })
        }
      }))

    it.effect("closes with 1009 on a frame over the limit, without touching other connections", () =>
      withServer(async (server) => {
        const alice = await server.connect("alice")
        const bob = await server.connect("bob")
        await alice.waitFor((f) => f.type === "welcome")
        alice.send(JSON.stringify({ type: "ping", id: "big", pad: "x".repeat(MAX_FRAME) }))
        expect((await alice.waitClose()).code).toBe(1009)
        bob.send({ type: "ping", id: "fine" })
        await bob.waitFor((f) => f.type === "pong" && f.ref === "fine")
        // Just under the limit is fine.
        const carol = await server.connect("carol")
        carol.send(JSON.stringify({ type: "ping", id: "edge", pad: "x".repeat(MAX_FRAME - 100) }))
        await carol.waitFor((f) => f.type === "pong" && f.ref === "edge")
      }))

    it.effect("survives a burst of random garbage, answering every frame", () =>
      withServer(async (server) => {
        const alice = await server.connect("alice")
        await alice.waitFor((f) => f.type === "welcome")
        let seed = 42
        const random = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31
        const count = 200
        for (let i = 0; i < count; i++) {
          const length = Math.floor(random() * 200)
          alice.send(Array.from({ length }, () => String.fromCharCode(32 + Math.floor(random() * 95))).join(""))
        }
        await alice.until(
          () => alice.frames.filter((f) => f.type === "error").length >= count || undefined,
          10_000,
          "errors"
        )
        expect(alice.frames.filter((f) => f.type === "error")).toHaveLength(count)
        expect(alice.closed).toBeUndefined()
      }))
  }
)

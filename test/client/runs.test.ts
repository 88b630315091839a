/**
 * Run handles and reconnection, on a model whose answer the test paces
 * (a gate): the socket cut mid-run through a TCP proxy, the client
 * reconnecting and resuming the thread after its last seq (no gap, no
 * duplicate), a run cancelled, and a queued message's run named by its
 * `agent_started`.
 */
import { expect, layer } from "@effect/vitest"
import { type AgentChatClient, type ClientEvent, connect, type ThreadEvent } from "../../src/client/index.ts"
import { Gate, gatedModel } from "../utils/Models.ts"
import { TcpProxy } from "../utils/TcpProxy.ts"
import { TestServer, withServer } from "../utils/TestServer.ts"
import { sign } from "../utils/tokens.ts"
import { until } from "../utils/until.ts"

const gate = new Gate()
let tests = 0
const user = () => `sdk-runs-${++tests}`

const deltas = (events: ReadonlyArray<ThreadEvent>) =>
  events.flatMap((e) => e.event_type === "agent_response_delta" ? [e.data.delta] : [])

const open: Array<AgentChatClient> = []
const closeAll = () => open.splice(0).forEach((c) => c.close())

layer(TestServer.layer({ model: gatedModel(gate, 6) }), { excludeTestServices: true, timeout: 60_000 })(
  "run handles and reconnection",
  (it) => {
    it.effect("a socket cut mid-run: the client reconnects, rejoins after its last seq, each event once, in order", () =>
      withServer(async (server) => {
        const proxy = await TcpProxy.start()
        proxy.target = { host: "127.0.0.1", port: server.port }
        const userId = user()
        const alice = await connect({
          url: `ws://127.0.0.1:${proxy.port}/ws`,
          token: () => sign(userId),
          reconnect: { initialDelayMs: 50, maxDelayMs: 200 }
        })
        open.push(alice)
        const notices: Array<ClientEvent> = []
        alice.on((e) => e.type !== "event" && e.type !== "presence" && notices.push(e))
        const thread = await alice.createThread()
        const seqs: Array<number> = []
        thread.on((e) => e.type === "event" && seqs.push(e.seq))
        const run = await thread.send("tell me")
        gate.allow(2)
        await until(async () => deltas(run.received).length === 2, "two deltas")
        // Cut: the socket is reset, the next two attempts refused; meanwhile the run goes on, stored.
        proxy.blip(2)
        gate.allow(2)
        await until(async () => alice.state === "reconnecting", "the drop seen")
        await until(async () => alice.state === "open", "reconnected")
        gate.allow(2)
        const end = await run.done
        expect(end.event_type).toBe("agent_completed")
        expect(deltas(run.received)).toEqual(["part1 ", "part2 ", "part3 ", "part4 ", "part5 ", "part6 "])
        expect(seqs).toEqual(Array.from({ length: seqs.length }, (_, i) => i + 1))
        expect(run.received.map((e) => e.seq)).toEqual(seqs.slice(1))
        expect(proxy.refused).toBe(2)
        expect(notices.map((n) => n.type)).toEqual(["disconnected", "connected"])
        expect(notices[0]).toMatchObject({ type: "disconnected", reconnecting: true })
        expect(notices[1]).toMatchObject({ type: "connected", reconnected: true })
        // The connection works on: the next message's run is heard too.
        const next = await thread.send("again")
        gate.allow(6)
        expect((await next.done).event_type).toBe("agent_completed")
        closeAll()
        await proxy.close()
      }))

    it.effect("cancel(): the run ends with agent_error cancelled, done resolves with it", () =>
      withServer(async (server) => {
        const userId = user()
        const alice = await connect({ url: server.wsUrl, token: () => sign(userId) })
        open.push(alice)
        const thread = await alice.createThread()
        const run = await thread.send("long answer")
        gate.allow(1)
        await until(async () => deltas(run.received).length === 1, "one delta")
        await run.cancel()
        const end = await run.done
        expect(end.event_type).toBe("agent_error")
        if (end.event_type === "agent_error") expect(end.data.code).toBe("cancelled")
        // Cancelling an ended run is a no-op.
        await run.cancel()
        closeAll()
      }))

    it.effect("a queued message's run has no id until its agent_started names the message; then it runs to done", () =>
      withServer(async (server) => {
        const userId = user()
        const alice = await connect({ url: server.wsUrl, token: () => sign(userId) })
        open.push(alice)
        const thread = await alice.createThread()
        const first = await thread.send("first")
        const second = await thread.send("second", { onBusy: "enqueue" })
        expect(second.queued).toBe(true)
        expect(second.runId).toBeNull()
        gate.openFully()
        expect((await first.done).event_type).toBe("agent_completed")
        const end = await second.done
        expect(end.event_type).toBe("agent_completed")
        expect(second.runId).toBe(end.run_id)
        expect(second.received[0]).toMatchObject({
          event_type: "agent_started",
          data: { message_id: second.messageId }
        })
        closeAll()
      }))
  }
)

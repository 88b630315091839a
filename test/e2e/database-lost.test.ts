import { afterAll, expect, layer, onTestFinished } from "@effect/vitest"
import type { EventFrame } from "../utils/ChatClient.ts"
import { expectRunShape, expectValidRuns } from "../utils/invariants.ts"
import { Gate, gatedModel } from "../utils/Models.ts"
import { TcpProxy } from "../utils/TcpProxy.ts"
import { TestServer, type TestServerShape, withServer } from "../utils/TestServer.ts"
import { until } from "../utils/until.ts"

// The server reaches its database (the machine's PostgreSQL when TEST_DATABASE_URL is set, else the
// embedded one) through this proxy; cutting it is the database lost, for this server only.
const proxy = await TcpProxy.start()
afterAll(() => proxy.close())
const gate = new Gate()

const readiness = async (server: TestServerShape) => {
  const response = await server.fetch("/health/ready")
  return { status: response.status, body: await response.json() }
}

layer(TestServer.layer({ model: gatedModel(gate, 2), databaseProxy: proxy }), {
  excludeTestServices: true,
  timeout: 60_000
})("the database lost at runtime", (it) => {
  it.effect("is not declared lost for one failed check: a blip is retried before anything degrades", () =>
    withServer(async (server) => {
      proxy.blip(1)
      // The monitor's next check meets the refused connection, then checks again and gets through.
      await until(async () => proxy.refused >= 1 ? true : undefined, "a check to meet the blip")
      await until(
        async () => (await readiness(server)).status === 200 ? true : undefined,
        "the database to answer again"
      )
      const metrics = await (await server.fetch("/metrics")).text()
      expect(metrics).toMatch(/agentchat_component_up\{component="database"\} 1/)
      expect(metrics).not.toMatch(/agentchat_database_lost_total [1-9]/)
    }))

  it.effect(
    "degrades, refuses new messages with unavailable, ends the run it broke, keeps connections, recovers by itself",
    () =>
      withServer(async (server) => {
        const alice = await server.connect("alice")
        const { thread_id } = await alice.request({ type: "create_thread" })
        const other = await alice.request({ type: "create_thread" })
        const sent = await alice.request({ type: "send_message", thread_id, content: "go" })
        await alice.waitFor((f) => f.type === "event" && f.event_type === "agent_thinking")

        proxy.cut()
        onTestFinished(() => proxy.restore())
        const degraded = await until(
          async () => {
            const r = await readiness(server)
            // Degraded as soon as a check fails; lost (with since when) once three in a row have.
            return r.body.status === "degraded" && r.body.components.database.since !== undefined ? r : undefined
          },
          "the database marked lost",
          20_000
        )
        expect(degraded.status).toBe(503)
        expect(degraded.body.components.database).toMatchObject({ status: "down" })
        expect(degraded.body.components.database.reason).toMatch(/the database does not answer/)

        // The connection stays open and answers; a new message is refused with a clear code.
        alice.send({ type: "ping", id: "still-there" })
        await alice.waitFor((f) => f.type === "pong" && f.ref === "still-there")
        const refused = await alice.request({ type: "send_message", thread_id: other.thread_id, content: "hi" })
          .then(() => undefined, (e: unknown) => e)
        expect(refused).toMatchObject({ code: "unavailable" })

        // The active run cannot store its next event: it ends with agent_error `unavailable`,
        // stored and delivered once the database is back.
        gate.openFully()
        const metrics = await (await server.fetch("/metrics")).text()
        expect(metrics).toMatch(/agentchat_component_up\{component="database"\} 0/)
        expect(metrics).toMatch(/agentchat_database_lost_total 1/)

        proxy.restore()
        await until(async () => (await readiness(server)).status === 200 ? true : undefined, "ready again")
        const terminal = await alice.waitRunEnd(sent.run_id, 20_000)
        expect(terminal).toMatchObject({ event_type: "agent_error", data: { code: "unavailable" } })
        expect(alice.ws.readyState).toBe(alice.ws.OPEN)

        // Nothing the client was sent is lost: the log holds exactly what it saw, with no gap.
        const seen = alice.events(thread_id)
        const stored: Array<EventFrame> = (await (await server.fetch(`/api/threads/${thread_id}/events`, {
          userId: "alice"
        })).json()).events
        expectValidRuns(stored)
        expect(seen.map((e) => e.event_id)).toEqual(stored.map((e) => e.event_id))
        expectRunShape(seen, sent.run_id)

        // And the server works again, on the same connection and on a new one.
        const again = await alice.request({ type: "send_message", thread_id: other.thread_id, content: "hi" })
        expect((await alice.waitRunEnd(again.run_id)).event_type).toBe("agent_completed")
        const second = await server.connect("alice")
        expect(await second.request({ type: "join_thread", thread_id, after_seq: 0 })).toMatchObject({
          head_seq: stored.length
        })
      })
  )
})

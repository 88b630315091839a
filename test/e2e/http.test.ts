import { expect, layer } from "@effect/vitest"
import { ChatClient } from "../utils/ChatClient.ts"
import { TestServer, withServer } from "../utils/TestServer.ts"

layer(TestServer.layer(), { excludeTestServices: true, timeout: 60_000 })("HTTP endpoints", (it) => {
  it.effect("reports liveness and per-component readiness", () =>
    withServer(async (server) => {
      const live = await fetch(`${server.httpUrl}/health/live`)
      expect(live.status).toBe(200)
      expect(await live.json()).toEqual({ status: "ok" })
      const ready = await fetch(`${server.httpUrl}/health/ready`)
      expect(ready.status).toBe(200)
      const body = await ready.json()
      expect(body.status).toBe("ready")
      for (const component of ["database", "broker", "auth", "websocket", "supervisor"]) {
        expect(body.components[component].status, component).toBe("up")
      }
    }))

  it.effect("issues dev tokens that open a connection, and validates the body", () =>
    withServer(async (server) => {
      const response = await fetch(`${server.httpUrl}/api/dev/token`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ user_id: "zoe" })
      })
      expect(response.status).toBe(200)
      const { token } = await response.json()
      const client = await ChatClient.connect(server.wsUrl, { token })
      expect(await client.waitFor((f) => f.type === "welcome")).toMatchObject({ user_id: "zoe" })
      client.close()
      const bad = await fetch(`${server.httpUrl}/api/dev/token`, { method: "POST", body: "{\"user\":1}" })
      expect(bad.status).toBe(400)
    }))

  it.effect("serves a thread's stored events with after_seq and limit, in the WebSocket envelope", () =>
    withServer(async (server) => {
      const alice = await server.connect("alice")
      const { thread_id } = await alice.request({ type: "create_thread" })
      const sent = await alice.request({ type: "send_message", thread_id, content: "what is 2+2" })
      await alice.waitRunEnd(sent.run_id)
      const live = alice.events(thread_id)

      const all = await (await server.fetch(`/api/threads/${thread_id}/events`, { userId: "alice" })).json()
      expect(all.head_seq).toBe(live.length)
      expect(all.events).toEqual(live)
      const page =
        await (await server.fetch(`/api/threads/${thread_id}/events?after_seq=2&limit=3`, { userId: "alice" }))
          .json()
      expect(page.events.map((e: { seq: number }) => e.seq)).toEqual([3, 4, 5])
      for (const query of ["after_seq=-1", "limit=0", "limit=10001", "after_seq=abc"]) {
        const response = await server.fetch(`/api/threads/${thread_id}/events?${query}`, { userId: "alice" })
        expect(response.status, query).toBe(400)
      }
      const anonymous = await fetch(`${server.httpUrl}/api/threads/${thread_id}/events`)
      expect(anonymous.status).toBe(401)
      const listed = await fetch(`${server.httpUrl}/api/threads`, { headers: { authorization: "Bearer nope" } })
      expect(listed.status).toBe(401)
    }))

  it.effect("serves the chat page and 404 for unknown routes", () =>
    withServer(async (server) => {
      const page = await fetch(`${server.httpUrl}/`)
      expect(page.status).toBe(200)
      expect(page.headers.get("content-type")).toMatch(/text\/html/)
      expect(await page.text()).toMatch(/<html/i)
      const missing = await fetch(`${server.httpUrl}/nope`)
      expect(missing.status).toBe(404)
      expect(await missing.json()).toMatchObject({ error: "not_found" })
    }))
})

layer(TestServer.layer({ devTokens: false }), { excludeTestServices: true, timeout: 60_000 })(
  "without the dev-token issuer (production graph)",
  (it) => {
    it.effect("answers 404 on /api/dev/token", () =>
      withServer(async (server) => {
        const response = await fetch(`${server.httpUrl}/api/dev/token`, {
          method: "POST",
          body: JSON.stringify({ user_id: "zoe" })
        })
        expect(response.status).toBe(404)
      }))
  }
)

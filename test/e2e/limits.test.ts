import { expect, layer } from "@effect/vitest"
import { Effect } from "effect"
import { makeTestConfig } from "../../src/config/AppConfig.ts"
import { Hub } from "../../src/gateway/Hub.ts"
import { ChatClient, RequestFailed, UpgradeRefused } from "../utils/ChatClient.ts"
import { service, TestServer, withServer } from "../utils/TestServer.ts"
import { sign } from "../utils/tokens.ts"

const ORIGIN = "https://chat.example"

const limits = {
  ...makeTestConfig().limits,
  allowedOrigins: [ORIGIN],
  connectionsPerUser: 2,
  threadsPerConnection: 2,
  messageChars: 100,
  membersPerThread: 3
}

const refusal = (promise: Promise<ChatClient>) =>
  promise.then((client) => {
    client.close()
    throw new Error("expected a refusal")
  }, (error: unknown) => {
    if (!(error instanceof UpgradeRefused)) throw error
    return error
  })

const codeOf = (promise: Promise<unknown>) =>
  promise.then(() => "ok", (error: unknown) => error instanceof RequestFailed ? error.code : String(error))

layer(TestServer.layer({ config: { limits } }), { excludeTestServices: true, timeout: 60_000 })("limits", (it) => {
  const connect = (server: import("../utils/TestServer.ts").TestServerShape, user: string) =>
    server.connect(user, { headers: { origin: ORIGIN } })

  it.effect("refuses a foreign Origin outside the allow-list with 403 before upgrading, and accepts a listed one", () =>
    withServer(async (server) => {
      const token = await sign("olga")
      const foreign = await refusal(
        ChatClient.connect(server.wsUrl, { token, headers: { origin: "https://evil.example" } })
      )
      expect(foreign.status).toBe(403)
      expect(foreign.body).toMatchObject({ error: "forbidden", reason: expect.stringMatching(/evil\.example/) })
      const allowed = await connect(server, "olga")
      expect(await allowed.waitFor((f) => f.type === "welcome")).toMatchObject({ user_id: "olga" })
    }))

  // Cross-site hijacking is a browser attack, and browsers always send Origin: a CLI or a server sends none.
  it.effect("accepts a client that sends no Origin and a valid token, and answers one without a token 401", () =>
    withServer(async (server) => {
      const cli = await server.connect("olaf")
      expect(await cli.waitFor((f) => f.type === "welcome")).toMatchObject({ user_id: "olaf" })
      const anonymous = await refusal(ChatClient.connect(server.wsUrl))
      expect(anonymous.status).toBe(401)
      expect(anonymous.body).toMatchObject({ error: "unauthorized" })
    }))

  it.effect("accepts the page the server itself serves, whose origin is not listed", () =>
    withServer(async (server) => {
      const own = await server.connect("opal", { headers: { origin: server.httpUrl } })
      expect(await own.waitFor((f) => f.type === "welcome")).toMatchObject({ user_id: "opal" })
    }))

  it.effect("refuses a user's connection past the limit with 429, and accepts again once one closes", () =>
    withServer(async (server) => {
      const first = await connect(server, "pat")
      await connect(server, "pat")
      const third = await refusal(connect(server, "pat"))
      expect(third.status).toBe(429)
      expect(third.body.error).toBe("rate_limited")
      await connect(server, "quinn")
      first.close()
      await first.waitClose()
      const hub = service(server, Hub)
      const deadline = Date.now() + 5_000
      while (hub.connectionsOf("pat") >= 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10))
      const again = await connect(server, "pat")
      await again.waitFor((f) => f.type === "welcome")
      expect(await Effect.runPromise(hub.stats)).toMatchObject({ connections: expect.any(Number) })
    }))

  it.effect("limits the threads a connection joins, the length of a message and the members of a thread", () =>
    withServer(async (server) => {
      const client = await connect(server, "sam")
      const ids: Array<string> = []
      for (let i = 0; i < 3; i++) ids.push((await client.request({ type: "create_thread" })).thread_id)
      await client.request({ type: "join_thread", thread_id: ids[0] })
      await client.request({ type: "join_thread", thread_id: ids[1] })
      expect(await codeOf(client.request({ type: "join_thread", thread_id: ids[2] }))).toBe("forbidden")
      expect(await codeOf(client.request({ type: "send_message", thread_id: ids[2], content: "hi" }))).toBe("forbidden")
      await client.request({ type: "leave_thread", thread_id: ids[1] })
      await client.request({ type: "join_thread", thread_id: ids[2] })

      const tooLong = client.request({ type: "send_message", thread_id: ids[0], content: "x".repeat(101) })
      await expect(tooLong).rejects.toThrow(/invalid_message: invalid field "content": at most 100/)
      const crowded = client.request({ type: "create_thread", members: ["a", "b", "c"] })
      await expect(crowded).rejects.toThrow(/invalid_message: a thread has at most 3 members/)
      expect(await codeOf(client.request({ type: "create_thread", members: ["a", "b", "sam"] }))).toBe("ok")
    }))
})

layer(
  TestServer.layer({ config: { limits: { ...limits, framesPerSecond: 5, frameBurst: 5, floodThreshold: 10 } } }),
  { excludeTestServices: true, timeout: 60_000 }
)("frame rate limit", (it) => {
  it.effect("answers frames past the rate with rate_limited, then closes a client that keeps flooding with 1008", () =>
    withServer(async (server) => {
      const client = await server.connect("rita", { headers: { origin: ORIGIN } })
      await client.waitFor((f) => f.type === "welcome")
      for (let i = 0; i < 8; i++) client.send({ type: "ping", id: `p${i}` })
      await client.until(
        () => client.frames.filter((f) => f.type !== "welcome").length >= 8 || undefined,
        5_000,
        "replies"
      )
      const pongs = client.frames.filter((f) => f.type === "pong")
      const limited = client.frames.filter((f) => f.type === "error" && f.code === "rate_limited")
      expect(pongs.length).toBeGreaterThanOrEqual(5)
      expect(limited.length).toBeGreaterThanOrEqual(1)
      expect(pongs.length + limited.length).toBe(8)
      for (const error of limited) expect(error).toMatchObject({ ref: expect.stringMatching(/^p\d$/) })
      for (let i = 0; i < 40; i++) client.send({ type: "ping", id: `f${i}` })
      expect((await client.waitClose()).code).toBe(1008)
    }))
})

import { expect, layer } from "@effect/vitest"
import { Duration, Effect, Option } from "effect"
import { Readiness } from "../../src/domain/Health.ts"
import { ChatClient, UpgradeRefused } from "../utils/ChatClient.ts"
import { service, TestServer, withServer } from "../utils/TestServer.ts"
import { sign, unsignedToken } from "../utils/tokens.ts"

const refused = async (url: string, token?: string, options: { tokenIn?: "header" | "query" } = {}) => {
  const error = await ChatClient.connect(url, { ...(token === undefined ? {} : { token }), ...options }).then(
    (client) => {
      client.close()
      throw new Error("expected the upgrade to be refused")
    },
    (error: unknown) => error
  )
  if (!(error instanceof UpgradeRefused)) throw error
  return error
}

const tamper = (token: string) => {
  const [header, payload, signature] = token.split(".")
  const claims = JSON.parse(Buffer.from(payload!, "base64url").toString())
  const forged = Buffer.from(JSON.stringify({ ...claims, sub: "mallory" })).toString("base64url")
  return `${header}.${forged}.${signature}`
}

layer(TestServer.layer(), { excludeTestServices: true, timeout: 60_000 })("authentication at the upgrade", (it) => {
  it.effect("accepts a valid token in the Authorization header and in ?token=", () =>
    withServer(async (server) => {
      const viaHeader = await ChatClient.connect(server.wsUrl, { token: await sign("alice") })
      expect(await viaHeader.waitFor((f) => f.type === "welcome")).toMatchObject({ user_id: "alice" })
      const viaQuery = await ChatClient.connect(server.wsUrl, { token: await sign("bob"), tokenIn: "query" })
      expect(await viaQuery.waitFor((f) => f.type === "welcome")).toMatchObject({ user_id: "bob" })
      viaHeader.close()
      viaQuery.close()
    }))

  it.effect("refuses every bad token with 401 and a JSON reason, before upgrading", () =>
    withServer(async (server) => {
      const cases: Array<[string, string | undefined, RegExp]> = [
        ["no token", undefined, /missing/],
        ["malformed", "not-a-jwt", /malformed|invalid/],
        ["unsigned (alg none)", unsignedToken("alice"), /algorithm|invalid|malformed/],
        ["wrong key", await sign("alice", { secret: "another-secret-another-secret-00" }), /signature/],
        ["tampered", tamper(await sign("alice")), /signature/],
        ["expired", await sign("alice", { expiresIn: -3600 }), /expired/],
        ["not yet valid", await sign("alice", { notBefore: 3600 }), /not yet valid/],
        ["no subject", await sign("alice", { subject: null }), /sub/]
      ]
      for (const [name, token, reason] of cases) {
        const error = await refused(server.wsUrl, token)
        expect(error.status, name).toBe(401)
        expect(error.body.error, name).toBe("unauthorized")
        expect(error.body.reason, name).toMatch(reason)
      }
      const viaQuery = await refused(server.wsUrl, "garbage", { tokenIn: "query" })
      expect(viaQuery.status).toBe(401)
    }))

  it.effect("answers 404 for an upgrade anywhere but /ws, and 426 for plain GET /ws", () =>
    withServer(async (server) => {
      const error = await refused(server.wsUrl.replace("/ws", "/elsewhere"), await sign("alice"))
      expect(error.status).toBe(404)
      const plain = await fetch(`${server.httpUrl}/ws`)
      expect(plain.status).toBe(426)
    }))

  it.effect("answers 503 while the server is not ready, then accepts again", () =>
    Effect.gen(function*() {
      const server = yield* TestServer
      const readiness = service(server, Readiness)
      yield* readiness.set("starting")
      const error = yield* Effect.promise(async () => refused(server.wsUrl, await sign("alice")))
      expect(error.status).toBe(503)
      expect(error.body.error).toBe("unavailable")
      const health = yield* Effect.promise(() => fetch(`${server.httpUrl}/health/ready`))
      expect(health.status).toBe(503)
      expect(yield* Effect.promise(() => health.json())).toMatchObject({ status: "starting" })
      yield* readiness.set("ready")
      const client = yield* Effect.promise(() => server.connect("alice"))
      yield* Effect.promise(() => client.waitFor((f) => f.type === "welcome"))
    }))
})

layer(
  TestServer.layer({
    config: { jwtIssuer: Option.some("https://issuer.test"), jwtAudience: Option.some("agent-chat") }
  }),
  { excludeTestServices: true, timeout: 60_000 }
)("issuer and audience, when configured", (it) => {
  it.effect("accepts only tokens with the configured iss and aud", () =>
    withServer(async (server) => {
      const good = await sign("alice", { issuer: "https://issuer.test", audience: "agent-chat" })
      const client = await ChatClient.connect(server.wsUrl, { token: good })
      await client.waitFor((f) => f.type === "welcome")
      client.close()
      for (
        const token of [
          await sign("alice", { issuer: "https://evil.test", audience: "agent-chat" }),
          await sign("alice", { issuer: "https://issuer.test", audience: "other" }),
          await sign("alice")
        ]
      ) {
        const error = await refused(server.wsUrl, token)
        expect(error.status).toBe(401)
        expect(error.body.reason).toMatch(/iss|aud/)
      }
    }))
})

layer(TestServer.layer({ config: { jwtClockSkew: Duration.zero } }), { excludeTestServices: true, timeout: 60_000 })(
  "token lifetime on an open connection",
  (it) => {
    it.effect("closes with 4001 when the token expires", () =>
      withServer(async (server) => {
        const client = await ChatClient.connect(server.wsUrl, { token: await sign("tess", { expiresIn: 1 }) })
        await client.waitFor((f) => f.type === "welcome")
        const close = await client.waitClose(10_000)
        expect(close.code).toBe(4001)
      }))

    it.effect("keeps a connection whose client refreshed its token in time", () =>
      withServer(async (server) => {
        const client = await ChatClient.connect(server.wsUrl, { token: await sign("tess", { expiresIn: 1 }) })
        await client.waitFor((f) => f.type === "welcome")
        expect(await client.request({ type: "refresh_token", token: await sign("tess", { expiresIn: 3600 }) }))
          .toMatchObject({ type: "ack" })
        // Past the first token's expiry, the connection still answers.
        await new Promise((resolve) => setTimeout(resolve, 1_500))
        client.send({ type: "ping", id: "after-expiry" })
        await client.waitFor((f) => f.type === "pong" && f.ref === "after-expiry")
        expect(client.closed).toBeUndefined()
      }))

    it.effect("refuses a bad refresh token, and closes with 1008 on a token for another user", () =>
      withServer(async (server) => {
        const client = await server.connect("tess")
        const bad = client.request({ type: "refresh_token", token: "garbage" })
        await expect(bad).rejects.toThrow(/forbidden: token refused/)
        const expired = client.request({ type: "refresh_token", token: await sign("tess", { expiresIn: -10 }) })
        await expect(expired).rejects.toThrow(/forbidden: token refused: token expired/)
        client.send({ type: "refresh_token", id: "other", token: await sign("mallory") })
        expect((await client.waitClose()).code).toBe(1008)
      }))
  }
)

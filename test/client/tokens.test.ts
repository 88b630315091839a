/**
 * The token provider: asked ahead of the JWT's `exp` and the fresh token
 * sent as `refresh_token` (the connection outlives the first token), and
 * after a close 4001 (the client reconnects with a fresh token and rejoins).
 * The server allows no clock skew here, so expiry is exact.
 */
import { expect, layer } from "@effect/vitest"
import { Duration } from "effect"
import { type ClientEvent, connect, type TokenReason } from "../../src/client/index.ts"
import { TestServer, withServer } from "../utils/TestServer.ts"
import { sign } from "../utils/tokens.ts"
import { until } from "../utils/until.ts"

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

layer(TestServer.layer({ config: { jwtClockSkew: Duration.zero } }), { excludeTestServices: true, timeout: 60_000 })(
  "token provider",
  (it) => {
    it.effect("refreshes the token ahead of its exp: the connection outlives the first token, never closed", () =>
      withServer(async (server) => {
        const reasons: Array<TokenReason> = []
        const notices: Array<ClientEvent> = []
        const client = await connect({
          url: server.wsUrl,
          token: (reason) => {
            reasons.push(reason)
            return sign("sdk-tess", { expiresIn: 3 })
          }
        })
        client.on((e) => notices.push(e))
        await client.createThread()
        await sleep(4_500)
        await client.ping()
        expect(reasons[0]).toBe("connect")
        expect(reasons.filter((r) => r === "expiring").length).toBeGreaterThanOrEqual(2)
        expect(notices.filter((n) => n.type === "disconnected" || n.type === "token_refresh_failed")).toEqual([])
        client.close()
      }))

    it.effect("on close 4001 asks for a fresh token, reconnects and rejoins its threads", () =>
      withServer(async (server) => {
        const reasons: Array<TokenReason> = []
        let current = await sign("sdk-tina", { expiresIn: 2 })
        const client = await connect({
          url: server.wsUrl,
          token: async (reason) => {
            reasons.push(reason)
            // Ahead of expiry the same token again, so nothing is refreshed and the server closes with 4001.
            if (reason === "expired") current = await sign("sdk-tina", { expiresIn: 3600 })
            return current
          }
        })
        const notices: Array<ClientEvent> = []
        client.on((e) => notices.push(e))
        const thread = await client.createThread()
        await until(async () => notices.some((n) => n.type === "connected"), "reconnected", 10_000)
        expect(notices.find((n) => n.type === "disconnected")).toMatchObject({ code: 4001, reconnecting: true })
        expect(reasons).toContain("expired")
        expect(thread.joined).toBe(true)
        const run = await thread.send("what is 1+1")
        expect((await run.done).event_type).toBe("agent_completed")
        expect(thread.lastSeq).toBeGreaterThan(2)
        client.close()
      }))

    it.effect("a fixed token that has expired is not retried forever: the client closes", () =>
      withServer(async (server) => {
        const client = await connect({ url: server.wsUrl, token: await sign("sdk-tom", { expiresIn: 1 }) })
        await until(async () => client.state === "closed", "closed", 10_000)
        await expect(client.ping()).rejects.toMatchObject({ _tag: "ClientClosed", code: 4001 })
      }))
  }
)

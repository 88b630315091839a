import { expect, layer } from "@effect/vitest"
import { Duration } from "effect"
import { exportJWK, exportSPKI, generateKeyPair, SignJWT } from "jose"
import { createServer, type Server } from "node:http"
import { ChatClient, UpgradeRefused } from "../utils/ChatClient.ts"
import { TestServer, withServer } from "../utils/TestServer.ts"
import { sign } from "../utils/tokens.ts"

type Alg = "RS256" | "ES256"

const keyPair = (alg: Alg) => generateKeyPair(alg, { extractable: true })
const rsa = await keyPair("RS256")
const ec = await keyPair("ES256")
const rotatedOut = await keyPair("RS256")
const rotatedIn = await keyPair("ES256")

const signWith = (alg: Alg, key: CryptoKey, userId: string, kid?: string) =>
  new SignJWT({}).setProtectedHeader(kid === undefined ? { alg } : { alg, kid }).setSubject(userId)
    .setExpirationTime("1h").sign(key)

const welcomeOf = async (url: string, token: string) => {
  const client = await ChatClient.connect(url, { token })
  const welcome = await client.waitFor((f) => f.type === "welcome")
  client.close()
  return welcome
}

const refused = (url: string, token: string) =>
  ChatClient.connect(url, { token }).then((client) => {
    client.close()
    throw new Error("expected a refusal")
  }, (error: unknown) => {
    if (!(error instanceof UpgradeRefused)) throw error
    return error
  })

// A JWKS endpoint whose key set the test can rotate.
let served: Array<Record<string, unknown>> = [
  { ...(await exportJWK(rotatedOut.publicKey)), kid: "old", alg: "RS256" }
]
const jwksServer: Server = createServer((_request, response) => {
  response.setHeader("content-type", "application/json")
  response.end(JSON.stringify({ keys: served }))
})
await new Promise<void>((resolve) => jwksServer.listen(0, "127.0.0.1", resolve))
const jwksPort = (jwksServer.address() as import("node:net").AddressInfo).port

layer(
  TestServer.layer({ auth: { publicKey: await exportSPKI(rsa.publicKey) } }),
  { excludeTestServices: true, timeout: 60_000 }
)("RS256 with a PEM public key", (it) => {
  it.effect("accepts RS256 tokens of the key, and refuses other keys and algorithms not configured", () =>
    withServer(async (server) => {
      expect(await welcomeOf(server.wsUrl, await signWith("RS256", rsa.privateKey, "ivy"))).toMatchObject({
        user_id: "ivy"
      })
      const otherKey = await refused(server.wsUrl, await signWith("RS256", rotatedOut.privateKey, "ivy"))
      expect(otherKey.status).toBe(401)
      const es = await refused(server.wsUrl, await signWith("ES256", ec.privateKey, "ivy"))
      expect(es.body.reason).toMatch(/algorithm not allowed/)
      // HS256 stays accepted here: the test secret is configured too.
      expect(await welcomeOf(server.wsUrl, await sign("ivy"))).toMatchObject({ user_id: "ivy" })
      const health = await (await fetch(`${server.httpUrl}/health/ready`)).json()
      expect(health.components.auth.algorithms).toEqual(["HS256", "RS256"])
    }))
})

layer(
  TestServer.layer({ auth: { publicKey: (await exportSPKI(ec.publicKey)).replaceAll("\n", "\\n") } }),
  { excludeTestServices: true, timeout: 60_000 }
)("ES256 with a PEM public key given on one line", (it) => {
  it.effect("accepts ES256 tokens of the key", () =>
    withServer(async (server) => {
      expect(await welcomeOf(server.wsUrl, await signWith("ES256", ec.privateKey, "jo"))).toMatchObject({
        user_id: "jo"
      })
      expect((await refused(server.wsUrl, await signWith("RS256", rsa.privateKey, "jo"))).status).toBe(401)
    }))
})

layer(
  TestServer.layer({
    auth: {
      jwksUrl: new URL(`http://127.0.0.1:${jwksPort}/.well-known/jwks.json`),
      jwksCooldown: Duration.zero
    }
  }),
  { excludeTestServices: true, timeout: 60_000 }
)("a JWKS URL", (it) => {
  it.effect("verifies by kid, follows a key rotation without a restart, and answers 503 when the set is unreachable", () =>
    withServer(async (server) => {
      expect(await welcomeOf(server.wsUrl, await signWith("RS256", rotatedOut.privateKey, "kim", "old")))
        .toMatchObject({ user_id: "kim" })
      served = [{ ...(await exportJWK(rotatedIn.publicKey)), kid: "new", alg: "ES256" }]
      expect(await welcomeOf(server.wsUrl, await signWith("ES256", rotatedIn.privateKey, "kim", "new")))
        .toMatchObject({ user_id: "kim" })
      const retired = await refused(server.wsUrl, await signWith("RS256", rotatedOut.privateKey, "kim", "old"))
      expect(retired.status).toBe(401)
      expect(retired.body.reason).toMatch(/kid/)

      const open = await server.connect("kim")
      await new Promise<void>((resolve) => jwksServer.close(() => resolve()))
      jwksServer.closeAllConnections()
      const unknownKid = await refused(server.wsUrl, await signWith("ES256", rotatedIn.privateKey, "kim", "newer"))
      expect(unknownKid.status).toBe(503)
      expect(unknownKid.body).toMatchObject({ error: "unavailable" })
      // A refresh that cannot be checked for now is not a bad token: the client should retry it.
      const refresh = await open.request({
        type: "refresh_token",
        token: await signWith("ES256", rotatedIn.privateKey, "kim", "newest")
      }).catch((error: unknown) => error)
      expect(refresh).toMatchObject({ code: "unavailable" })
    }))
})

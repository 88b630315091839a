import { expect, layer } from "@effect/vitest"
import { Session } from "node:inspector/promises"
import { TestServer, withServer } from "../utils/TestServer.ts"

/** Live instances of Node's internal `TimersList` (one per distinct timer duration), counted by the inspector. */
const countTimerLists = async () => {
  const probe = setTimeout(() => {}, 987_654_321)
  ;(globalThis as Record<string, unknown>).__timersListPrototype = Object.getPrototypeOf(
    (probe as unknown as { _idlePrev: object })._idlePrev
  )
  clearTimeout(probe)
  const session = new Session()
  session.connect()
  try {
    const prototype = await session.post("Runtime.evaluate", { expression: "globalThis.__timersListPrototype" })
    const found = await session.post("Runtime.queryObjects", { prototypeObjectId: prototype.result.objectId! })
    const length = await session.post("Runtime.callFunctionOn", {
      objectId: found.objects.objectId!,
      functionDeclaration: "function() { return this.length }",
      returnByValue: true
    })
    return length.result.value as number
  } finally {
    session.disconnect()
    delete (globalThis as Record<string, unknown>).__timersListPrototype
  }
}

layer(TestServer.layer(), { excludeTestServices: true, timeout: 60_000 })("token expiry timers", (it) => {
  // Each connection arms a timer for its token's expiry; a closed connection must not leave anything behind.
  it.effect("leave no timer list behind when their connections close", () =>
    withServer(async (server) => {
      const before = await countTimerLists()
      for (let i = 0; i < 40; i++) {
        const client = await server.connect(`timer-${i}`)
        await client.waitFor((f) => f.type === "welcome")
        // Distinct expiries, as real clients' tokens have.
        await new Promise((resolve) => setTimeout(resolve, 2))
        client.close()
        await client.waitClose()
      }
      await new Promise((resolve) => setTimeout(resolve, 100))
      expect(await countTimerLists() - before).toBeLessThan(10)
    }))
})

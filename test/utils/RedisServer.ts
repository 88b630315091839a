/**
 * A private redis-server on a free loopback port, for a test that stops
 * and restarts its broker: never the machine's Redis, which other suites
 * share. Nothing is persisted; it is killed when the scope closes.
 */
import { Effect, type Scope } from "effect"
import { connect } from "node:net"
import { freePort, start, type Started, within } from "./process.ts"
import { until } from "./until.ts"

const pong = (port: number) =>
  new Promise<boolean>((resolve) => {
    const socket = connect(port, "127.0.0.1")
    let answer = ""
    const done = (ok: boolean) => {
      socket.destroy()
      resolve(ok)
    }
    socket.setTimeout(1000, () => done(false))
    socket.on("error", () => done(false))
    socket.on("connect", () => socket.write("PING\r\n"))
    socket.on("data", (chunk) => {
      answer += chunk.toString()
      if (answer.includes("\r\n")) done(answer.startsWith("+PONG"))
    })
  })

export interface RedisServer {
  readonly port: number
  readonly url: string
  /** Stops the server (SIGTERM) and resolves once it has exited. */
  readonly stop: () => Promise<void>
  /** Starts it again on the same port and resolves once it answers PING. */
  readonly start: () => Promise<void>
}

export const privateRedis: Effect.Effect<RedisServer, never, Scope.Scope> = Effect.gen(function*() {
  const port = yield* Effect.promise(() => freePort())
  let current: Started | undefined
  const run = async () => {
    const started = start("redis-server", [
      "--port",
      String(port),
      "--bind",
      "127.0.0.1",
      "--save",
      "",
      "--appendonly",
      "no"
    ], {})
    current = started
    let failed: Error | undefined
    started.child.once("error", (error) => failed = error)
    await until(async () => {
      if (failed !== undefined) throw new Error(`redis-server could not start: ${failed.message}`)
      if (started.child.exitCode !== null) throw new Error(`redis-server exited:\n${started.output()}`)
      return pong(port)
    }, `redis-server on ${port} to answer`)
  }
  const stop = async () => {
    const running = current
    if (running === undefined) return
    current = undefined
    running.child.kill("SIGTERM")
    await within(running.exit, 10_000, "redis-server did not stop")
  }
  yield* Effect.acquireRelease(
    Effect.promise(run),
    () =>
      Effect.promise(async () => {
        current?.child.kill("SIGKILL")
        await current?.exit
      })
  )
  return { port, url: `redis://127.0.0.1:${port}`, stop, start: run }
})

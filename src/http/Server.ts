/**
 * The HTTP server: the routes and the `/ws` upgrade on one port. It is the
 * last layer of the graph, so the port opens only once every component is
 * up; it marks the server ready once listening, and draining first thing
 * on shutdown.
 */
import { NodeHttpServer } from "@effect/platform-node"
import { Context, Duration, Effect, Layer } from "effect"
import { createServer, type Server } from "node:http"
import type { AddressInfo } from "node:net"
import { AppConfig } from "../config/AppConfig.ts"
import { StartupError } from "../domain/Errors.ts"
import { Readiness } from "../domain/Health.ts"
import { Hub } from "../gateway/Hub.ts"
import { makeWsAdapter } from "../gateway/WsAdapter.ts"
import { CloseCode } from "../protocol/Codes.ts"
import { Supervisor } from "../runs/Supervisor.ts"
import { app } from "./Routes.ts"

export class ServerAddress extends Context.Tag("agent-chat/ServerAddress")<ServerAddress, {
  readonly host: string
  readonly port: number
}>() {}

const listen = (server: Server, host: string, port: number) =>
  Effect.async<AddressInfo, StartupError>((resume) => {
    const onError = (cause: Error) =>
      resume(Effect.fail(new StartupError({ component: "http", reason: `cannot listen on ${host}:${port}`, cause })))
    server.once("error", onError)
    // A deep accept queue: a reconnect storm after a restart arrives all at once.
    server.listen({ port, host, backlog: 4096 }, () => {
      server.off("error", onError)
      resume(Effect.succeed(server.address() as AddressInfo))
    })
  })

const make = Effect.gen(function*() {
  const config = yield* AppConfig
  const readiness = yield* Readiness
  const supervisor = yield* Supervisor
  const hub = yield* Hub
  const handler = yield* NodeHttpServer.makeHandler(yield* app)
  const server = yield* Effect.acquireRelease(
    Effect.sync(() => createServer({ keepAliveTimeout: 5_000 })),
    (server) =>
      Effect.async<void>((resume) => {
        server.close(() => resume(Effect.void))
        server.closeAllConnections()
      })
  )
  // Released before the server closes: no new upgrades, open sockets told 1001.
  const upgrade = yield* makeWsAdapter
  // Shutdown, once readiness says draining (so /ws answers 503): runs get their grace period and
  // end with a stored terminal event, clients receive it, then are told 1001 to reconnect elsewhere.
  yield* Effect.addFinalizer(() =>
    Effect.gen(function*() {
      const stats = yield* hub.stats
      yield* Effect.logInfo("draining").pipe(Effect.annotateLogs({
        active_runs: yield* supervisor.activeRuns,
        connections: stats.connections,
        grace_ms: Duration.toMillis(config.shutdownGrace)
      }))
      yield* supervisor.drain(config.shutdownGrace)
      yield* hub.closeAll(CloseCode.GoingAway, "server shutting down; reconnect elsewhere", Duration.seconds(3))
      yield* Effect.logInfo("connections closed; stopping")
    }).pipe(Effect.annotateLogs({ component: "http" }))
  )
  server.on("request", handler)
  server.on("upgrade", upgrade)
  const address = yield* listen(server, config.host, config.port)
  yield* Effect.acquireRelease(readiness.set("ready"), () => readiness.set("draining"))
  yield* Effect.logInfo(`listening on http://${address.address}:${address.port}`).pipe(
    Effect.annotateLogs({ component: "http" })
  )
  return ServerAddress.of({ host: address.address, port: address.port })
})

export const HttpServerLive = Layer.scoped(ServerAddress, make)

/**
 * A real server on port 0 with test layers: the test database, the
 * in-process broker, the test secret, and any model or config a suite
 * needs. Suites share one per file through @effect/vitest's `layer`.
 */
import { Context, Effect, Layer, Logger, LogLevel } from "effect"
import { testGraph, type TestGraphOptions } from "../../layers/Test.ts"
import { ServerAddress } from "../../src/http/Server.ts"
import { ChatClient, type ConnectOptions } from "./ChatClient.ts"
import { sign } from "./tokens.ts"

export interface TestServerOptions extends TestGraphOptions {
  /** Receives the server's warnings and errors, for a test that asserts what was (or was not) logged. */
  readonly logged?: Array<string>
}

export interface TestServerShape {
  readonly port: number
  readonly wsUrl: string
  readonly httpUrl: string
  readonly context: Context.Context<never>
  /** Opens a connection as `userId` with a valid token; closed after the test by `withClients`. */
  readonly connect: (userId: string, options?: ConnectOptions) => Promise<ChatClient>
  readonly fetch: (path: string, init?: RequestInit & { readonly userId?: string }) => Promise<Response>
  /** Every client `connect` opened, so a test can check they decoded every frame with the protocol's Schemas. */
  readonly clients: ReadonlySet<ChatClient>
}

const logSink = (lines: Array<string> | undefined) =>
  lines === undefined
    ? Layer.empty
    : Logger.add(Logger.make(({ message }) => lines.push(Array.isArray(message) ? message.join(" ") : String(message))))

export class TestServer extends Context.Tag("test/TestServer")<TestServer, TestServerShape>() {
  static layer(options: TestServerOptions = {}): Layer.Layer<TestServer, unknown> {
    const graph = testGraph(options).pipe(
      Layer.provide(Logger.minimumLogLevel(LogLevel.Warning)),
      Layer.provide(logSink(options.logged))
    )
    return Layer.scoped(
      TestServer,
      Effect.gen(function*() {
        const context = yield* Layer.build(graph)
        const { port } = Context.get(context, ServerAddress)
        const wsUrl = `ws://127.0.0.1:${port}/ws`
        const httpUrl = `http://127.0.0.1:${port}`
        const clients = new Set<ChatClient>()
        yield* Effect.addFinalizer(() => Effect.sync(() => clients.forEach((c) => c.ws.terminate())))
        return {
          port,
          clients,
          wsUrl,
          httpUrl,
          context: context as Context.Context<never>,
          connect: async (userId, connectOptions) => {
            const client = await ChatClient.connect(wsUrl, { token: await sign(userId), ...connectOptions })
            clients.add(client)
            return client
          },
          fetch: async (path, init = {}) => {
            const headers = new Headers(init.headers)
            if (init.userId !== undefined) headers.set("authorization", `Bearer ${await sign(init.userId)}`)
            return fetch(`${httpUrl}${path}`, { ...init, headers })
          }
        }
      })
    )
  }
}

/**
 * Runs an async test body against the suite's server; then every frame its clients received must have
 * decoded with the protocol's Schemas (a frame that did not is a server frame off the contract).
 */
export const withServer = <A>(body: (server: TestServerShape) => Promise<A>) =>
  Effect.flatMap(TestServer, (server) =>
    Effect.promise(async () => {
      const before = new Set(server.clients)
      const result = await body(server)
      const undecoded = [...server.clients].filter((c) => !before.has(c)).flatMap((c) => c.undecoded)
      if (undecoded.length > 0) throw new Error(`frames off the protocol: ${JSON.stringify(undecoded.slice(0, 3))}`)
      return result
    }))

/** Reads a service of the running server, for assertions on its internals (hub stats and the like). */
export const service = <I, S>(server: TestServerShape, tag: Context.Tag<I, S>): S =>
  Context.unsafeGet(server.context as Context.Context<I>, tag)

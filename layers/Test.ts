/**
 * The test graph: the real server graph (layers/Graph.ts) with the choices
 * of tests, benchmarks and the stress suite: a fresh database (on the
 * PostgreSQL at TEST_DATABASE_URL when it is set, dropped afterwards, else
 * the embedded PGlite in memory; the real SQL client and migrations either
 * way), the in-process broker, the test secret, and whatever model, tools
 * and config the caller needs.
 */
import type { LanguageModel } from "@effect/ai"
import { PgClient } from "@effect/sql-pg"
import { Duration, Effect, Layer, Option, Redacted } from "effect"
import { randomUUID } from "node:crypto"
import { AuthLive, type AuthOptions } from "../src/auth/Auth.ts"
import { DevTokensLive, signToken } from "../src/auth/DevTokens.ts"
import { BuiltinModelLive } from "../src/builtin/BuiltinModel.ts"
import { BuiltinToolsLive } from "../src/builtin/BuiltinTools.ts"
import { type AppConfig, type AppConfigShape, AppConfigTest, makeTestConfig } from "../src/config/AppConfig.ts"
import * as Database from "../src/database/Database.ts"
import { Embedded, EmbeddedPostgres } from "../src/database/Embedded.ts"
import { StartupError } from "../src/domain/Errors.ts"
import { BrokerInProcess } from "../src/eventlog/Broker.ts"
import type { ModelInfo } from "../src/llm/ModelInfo.ts"
import type { Tool } from "../src/runs/Tool.ts"
import { Tools } from "../src/runs/ToolDispatcher.ts"
import { type GraphLayers, server } from "./Graph.ts"

const retry = { attempts: 3, baseDelay: Duration.millis(100), maxElapsed: Duration.seconds(5) }

export const testDatabaseUrl = Option.fromNullable(process.env.TEST_DATABASE_URL).pipe(
  Option.filter((url) => url.length > 0)
)

/** Creates a database for one test server and drops it when the scope closes. */
const freshDatabase = (adminUrl: string) =>
  Effect.gen(function*() {
    const name = `agent_chat_test_${randomUUID().replaceAll("-", "").slice(0, 16)}`
    const admin = yield* PgClient.PgClient
    yield* Effect.acquireRelease(
      admin.unsafe(`CREATE DATABASE ${name}`),
      () => admin.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`).pipe(Effect.ignore)
    )
    const url = new URL(adminUrl)
    url.pathname = `/${name}`
    return Redacted.make(url.toString())
  }).pipe(
    Effect.mapError((cause) =>
      new StartupError({ component: "database", reason: "cannot create a test database", cause })
    )
  )

/** A fresh database on the real server, dropped when the scope closes: its URL, and a pool's layer on it. */
export const freshPostgres = (adminUrl: string, poolSize = 4) =>
  Effect.gen(function*() {
    const admin = yield* Layer.build(PgClient.layer({ url: Redacted.make(adminUrl), maxConnections: 1 }))
    const url = yield* Effect.provide(freshDatabase(adminUrl), admin)
    return { url, layer: Database.layerUrl({ url, poolSize, retry }) }
  })

/** A TCP proxy in front of the database (a test's TcpProxy), so a test can cut it off. */
export interface DatabaseProxy {
  target: { host: string; port: number } | undefined
  readonly port: number
}

/** The URL to connect to: the database's own, or the proxy's, pointed at the database. */
const through = (url: Redacted.Redacted, proxy: DatabaseProxy | undefined) => {
  if (proxy === undefined) return url
  const parsed = new URL(Redacted.value(url))
  proxy.target = { host: parsed.hostname, port: Number(parsed.port || 5432) }
  parsed.hostname = "127.0.0.1"
  parsed.port = String(proxy.port)
  return Redacted.make(parsed.toString())
}

/** The embedded database in memory; it serves one connection, whatever pool size the config names. */
export const EmbeddedTestDatabase = (proxy?: DatabaseProxy) =>
  proxy === undefined
    ? Database.layerEmbedded({ dataDir: Option.none(), retry })
    : Layer.unwrapEffect(
      Effect.map(Embedded, (embedded) =>
        Database.layerUrl({ url: through(embedded.url, proxy), poolSize: Database.EMBEDDED_POOL_SIZE, retry }))
    ).pipe(
      Layer.provideMerge(
        EmbeddedPostgres({ dataDir: Option.none(), maxConnections: Database.EMBEDDED_POOL_SIZE + 2 })
      )
    )

export const PostgresTestDatabase = (adminUrl: string, poolSize = 4, proxy?: DatabaseProxy) =>
  Layer.unwrapScoped(
    Effect.map(freshDatabase(adminUrl), (url) => Database.layerUrl({ url: through(url, proxy), poolSize, retry }))
  ).pipe(Layer.provide(PgClient.layer({ url: Redacted.make(adminUrl), maxConnections: 1 }).pipe(Layer.orDie)))

/**
 * The database for servers under test: the real server when configured, else the embedded one;
 * reached through `proxy` when given, so a test can cut it off.
 */
export const TestDatabaseLive = (poolSize = 4, proxy?: DatabaseProxy) =>
  Option.match(testDatabaseUrl, {
    onNone: () => EmbeddedTestDatabase(proxy),
    onSome: (adminUrl) => PostgresTestDatabase(adminUrl, poolSize, proxy)
  })

/** Every database a repository suite must pass on: always the embedded one, and the real one when configured. */
export const allTestDatabases = (poolSize = 4) => [
  { name: "embedded", layer: EmbeddedTestDatabase() },
  ...Option.toArray(
    Option.map(testDatabaseUrl, (url) => ({ name: "postgres", layer: PostgresTestDatabase(url, poolSize) }))
  )
]

export interface TestGraphOptions {
  readonly config?: Partial<AppConfigShape>
  readonly model?: Layer.Layer<LanguageModel.LanguageModel | ModelInfo, unknown, AppConfig>
  /** Tools besides the built-in ones. */
  readonly extraTools?: ReadonlyArray<Tool>
  /** Keys besides the test secret (a PEM public key, a JWKS URL), or no secret at all. */
  readonly auth?: Partial<AuthOptions>
  /** Provide the dev-token issuer, as development mode does (default true). */
  readonly devTokens?: boolean
  /** Reach the database through this proxy, to cut it off mid-test. */
  readonly databaseProxy?: DatabaseProxy | undefined
  /** The broker, when not the in-process one (the Redis broker of the several-nodes suites). */
  readonly broker?: GraphLayers<unknown>["broker"]
  /** The database, when not a fresh one: a memoized layer shared by two graphs is two processes on one. */
  readonly database?: GraphLayers<unknown>["database"]
}

/** The server graph of a test, on port 0 of 127.0.0.1 unless the config says otherwise. */
export const testGraph = (options: TestGraphOptions = {}) => {
  const config = makeTestConfig(options.config)
  const secret = Option.getOrThrow(config.jwtSecret)
  const authOptions: AuthOptions = {
    secret,
    issuer: config.jwtIssuer,
    audience: config.jwtAudience,
    clockSkew: config.jwtClockSkew,
    requireExpiry: false,
    ...options.auth
  }
  return server({
    config: AppConfigTest(options.config),
    database: options.database ?? TestDatabaseLive(config.databasePoolSize, options.databaseProxy),
    broker: options.broker ?? BrokerInProcess,
    auth: options.devTokens === false
      ? AuthLive(authOptions)
      : Layer.merge(AuthLive(authOptions), DevTokensLive({ ...authOptions, secret })),
    model: options.model ?? BuiltinModelLive,
    tools: options.extraTools === undefined
      ? BuiltinToolsLive
      : Layer.effect(Tools, Effect.map(Tools, (builtin) => [...builtin, ...options.extraTools!])).pipe(
        Layer.provide(BuiltinToolsLive)
      )
  })
}

/** A token for `userId` signed with the test secret, valid for `ttlSeconds`. */
export const testToken = (userId: string, ttlSeconds = 3600) => {
  const config = makeTestConfig()
  return signToken(
    { secret: Option.getOrThrow(config.jwtSecret), issuer: config.jwtIssuer, audience: config.jwtAudience },
    userId,
    ttlSeconds
  )
}

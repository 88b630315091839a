/**
 * The database of a test: a fresh database on the server at
 * TEST_DATABASE_URL when it is set (dropped afterwards), else the embedded
 * PGlite in memory. Either way the real SQL client and migrations run.
 */
import { PgClient } from "@effect/sql-pg"
import { Duration, Effect, Layer, Option, Redacted } from "effect"
import { randomUUID } from "node:crypto"
import * as Database from "../../src/database/Database.ts"
import { Embedded, EmbeddedPostgres } from "../../src/database/Embedded.ts"
import { StartupError } from "../../src/domain/Errors.ts"
import type { TcpProxy } from "./TcpProxy.ts"

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

/** The URL to connect to: the database's own, or the proxy's, pointed at the database. */
const through = (url: Redacted.Redacted, proxy: TcpProxy | undefined) => {
  if (proxy === undefined) return url
  const parsed = new URL(Redacted.value(url))
  proxy.target = { host: parsed.hostname, port: Number(parsed.port || 5432) }
  parsed.hostname = "127.0.0.1"
  parsed.port = String(proxy.port)
  return Redacted.make(parsed.toString())
}

export const EmbeddedTestDatabase = (poolSize = 4, proxy?: TcpProxy) =>
  proxy === undefined
    ? Database.layerEmbedded({ dataDir: Option.none(), poolSize, retry })
    : Layer.unwrapEffect(
      Effect.map(Embedded, (embedded) =>
        Database.layerUrl({ url: through(embedded.url, proxy), poolSize: Database.EMBEDDED_POOL_SIZE, retry }))
    ).pipe(
      Layer.provideMerge(
        EmbeddedPostgres({ dataDir: Option.none(), maxConnections: Database.EMBEDDED_POOL_SIZE + 2 })
      )
    )

export const PostgresTestDatabase = (adminUrl: string, poolSize = 4, proxy?: TcpProxy) =>
  Layer.unwrapScoped(
    Effect.map(freshDatabase(adminUrl), (url) => Database.layerUrl({ url: through(url, proxy), poolSize, retry }))
  ).pipe(Layer.provide(PgClient.layer({ url: Redacted.make(adminUrl), maxConnections: 1 }).pipe(Layer.orDie)))

/**
 * The database for servers under test: the real server when configured, else the embedded one;
 * reached through `proxy` when given, so a test can cut it off.
 */
export const TestDatabaseLive = (poolSize = 4, proxy?: TcpProxy) =>
  Option.match(testDatabaseUrl, {
    onNone: () => EmbeddedTestDatabase(poolSize, proxy),
    onSome: (adminUrl) => PostgresTestDatabase(adminUrl, poolSize, proxy)
  })

/** Every database a repository suite must pass on: always the embedded one, and the real one when configured. */
export const allTestDatabases = (poolSize = 4) => [
  { name: "embedded", layer: EmbeddedTestDatabase(poolSize) },
  ...Option.toArray(
    Option.map(testDatabaseUrl, (url) => ({ name: "postgres", layer: PostgresTestDatabase(url, poolSize) }))
  )
]

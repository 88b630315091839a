/**
 * The Database layer: a PostgreSQL client (@effect/sql-pg) that has
 * answered a query and run every migration, or a StartupError naming the
 * database. Either a server at a URL or the embedded PGlite.
 */
import { NodeContext } from "@effect/platform-node"
import { PgClient, PgMigrator } from "@effect/sql-pg"
import * as SqlClient from "@effect/sql/SqlClient"
import { Duration, Effect, Layer, Option, Redacted, Schedule } from "effect"
import { type RetryPolicy, startupRetrySchedule } from "../config/AppConfig.ts"
import { StartupError } from "../domain/Errors.ts"
import { Embedded, EmbeddedPostgres } from "./Embedded.ts"
import { loader } from "./Migrations.ts"

export interface DatabaseOptions {
  readonly url: Redacted.Redacted
  readonly poolSize: number
  readonly retry: RetryPolicy
}

/** Where a URL points, without its password, for messages. */
export const describeUrl = (url: Redacted.Redacted): string => {
  try {
    const parsed = new URL(Redacted.value(url))
    return `${parsed.hostname}:${parsed.port || "5432"}${parsed.pathname}`
  } catch {
    return "an unparsable DATABASE_URL"
  }
}

const rootCause = (error: unknown): unknown => {
  let current = error
  for (let i = 0; i < 8 && current !== null && typeof current === "object" && "cause" in current; i++) {
    const next = (current as { cause: unknown }).cause
    if (next === undefined) break
    current = next
  }
  return current
}

/** The innermost cause of an error, as one line, for logs and health reports. */
export const describeCause = (error: unknown): string => {
  const cause = rootCause(error)
  if (cause instanceof Error) {
    const code = (cause as { code?: unknown }).code
    if (typeof code === "string" && !cause.message.includes(code)) return `${code} ${cause.message}`.trim()
    return cause.message || String(code ?? "unknown error")
  }
  return String(cause)
}

const client = (options: DatabaseOptions) => {
  let attempts = 0
  return Layer.suspend(() => {
    attempts++
    return PgClient.layer({
      url: options.url,
      maxConnections: options.poolSize,
      connectTimeout: Duration.seconds(5),
      idleTimeout: Duration.seconds(30),
      applicationName: "agent-chat"
    })
  }).pipe(
    Layer.retry(startupRetrySchedule(options.retry)),
    Layer.mapError((error) =>
      new StartupError({
        component: "database",
        reason: `unreachable at ${describeUrl(options.url)} after ${attempts} attempt${attempts === 1 ? "" : "s"}: ${
          describeCause(error)
        }`
      })
    )
  )
}

/**
 * Nodes starting at once on a new database race to create the migrations table (the migrator looks for
 * it, then creates it): the losers fail with 42P07, 42710 or 23505. Tried again they find it, and the
 * migrator's lock on it serializes the rest.
 */
const createdConcurrently = (error: unknown) => {
  const cause = rootCause(error)
  const code = typeof cause === "object" && cause !== null ? (cause as { code?: unknown }).code : undefined
  return code === "42P07" || code === "42710" || code === "23505"
}

const migrations = PgMigrator.layer({ loader }).pipe(
  Layer.retry(Schedule.recurs(2).pipe(Schedule.whileInput(createdConcurrently))),
  Layer.provide(NodeContext.layer),
  Layer.mapError((error) =>
    new StartupError({ component: "database", reason: `migrations failed: ${describeCause(error)}` })
  )
)

/** A database server at a URL: connected (with the startup retry policy), then migrated. */
export const layerUrl = (
  options: DatabaseOptions
): Layer.Layer<PgClient.PgClient | SqlClient.SqlClient, StartupError> =>
  migrations.pipe(Layer.provideMerge(client(options)))

/**
 * The embedded database (in `dataDir`, or in memory), served over the Postgres protocol. Its client
 * holds one connection whatever `poolSize` says: pglite-socket runs every connection on one session and
 * interleaves their protocol messages, so two connections' statements clobbered each other's unnamed
 * prepared statement ("bind message supplies 1 parameters, but prepared statement "" requires 3").
 * PGlite executes one statement at a time anyway.
 */
export const EMBEDDED_POOL_SIZE = 1

export const layerEmbedded = (options: {
  readonly dataDir: Option.Option<string>
  readonly retry: RetryPolicy
}): Layer.Layer<PgClient.PgClient | SqlClient.SqlClient | Embedded, StartupError> =>
  Layer.unwrapEffect(
    Effect.map(Embedded, (embedded) => layerUrl({ ...options, poolSize: EMBEDDED_POOL_SIZE, url: embedded.url }))
  ).pipe(
    Layer.provideMerge(EmbeddedPostgres({ dataDir: options.dataDir, maxConnections: EMBEDDED_POOL_SIZE + 2 }))
  )

/** Whether the database answers a query now. */
export const ping = Effect.flatMap(SqlClient.SqlClient, (sql) => sql`SELECT 1`).pipe(
  Effect.timeout(Duration.seconds(2)),
  Effect.asVoid
)

/**
 * The embedded database on a thread of its own: a long query does not
 * hold up the server's event loop, and a data directory it makes keeps
 * what was stored across a restart.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect, Layer, Option } from "effect"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as Database from "../../src/database/Database.ts"

const retry = { attempts: 1, baseDelay: Duration.millis(100), maxElapsed: Duration.seconds(5) }

const withDatabase = <A, E>(dataDir: Option.Option<string>, use: Effect.Effect<A, E, SqlClient.SqlClient>) =>
  Effect.scoped(Effect.flatMap(
    Layer.build(Database.layerEmbedded({ dataDir, retry })),
    (context) => Effect.provide(use, context)
  ))

describe("the embedded database", () => {
  it.live("runs its queries off the event loop: a half-second query leaves it free", () =>
    withDatabase(
      Option.none(),
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        let last = performance.now()
        let longest = 0
        const timer = setInterval(() => {
          const now = performance.now()
          longest = Math.max(longest, now - last)
          last = now
        }, 5)
        yield* sql`SELECT pg_sleep(0.5)`.pipe(Effect.ensuring(Effect.sync(() => clearInterval(timer))))
        // In the server's thread, the query's WebAssembly would stop every timer for the whole half second.
        expect(longest).toBeLessThan(200)
      })
    ), 60_000)

  it.live("makes a new data directory, and finds what it stored there after a restart", () =>
    Effect.gen(function*() {
      const dir = join(mkdtempSync(join(tmpdir(), "agent-chat-embedded-")), "pg")
      yield* Effect.addFinalizer(() => Effect.sync(() => rmSync(dir, { recursive: true, force: true })))
      yield* withDatabase(
        Option.some(dir),
        Effect.flatMap(SqlClient.SqlClient, (sql) =>
          sql`INSERT INTO threads (id, title, created_by, created_at) VALUES ('kept', NULL, 'ann', now())`)
      )
      const rows = yield* withDatabase(
        Option.some(dir),
        Effect.flatMap(SqlClient.SqlClient, (sql) =>
          sql<{ id: string }>`SELECT id FROM threads`)
      )
      expect(rows.map((r) => r.id)).toEqual(["kept"])
    }).pipe(Effect.scoped), 60_000)
})

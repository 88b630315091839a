/**
 * Nodes of a fleet starting at once on a new database (a first deploy with
 * several replicas) each run the migrations at startup: every one of them
 * must come up, the schema migrated once. Needs a real PostgreSQL: the
 * embedded one serves one connection.
 */
import { PgClient } from "@effect/sql-pg"
import { describe, expect, it } from "@effect/vitest"
import { Context, Duration, Effect, Layer, Option } from "effect"
import { freshPostgres } from "../../layers/Test.ts"
import * as Database from "../../src/database/Database.ts"
import { testDatabaseUrl } from "../utils/TestDatabase.ts"

const retry = { attempts: 1, baseDelay: Duration.millis(50), maxElapsed: Duration.seconds(2) }

describe.skipIf(Option.isNone(testDatabaseUrl))("migrations", () => {
  it.scopedLive("several nodes starting at once on a new database all come up, the schema migrated once", () =>
    Effect.gen(function*() {
      for (let round = 0; round < 3; round++) {
        const { url } = yield* freshPostgres(Option.getOrThrow(testDatabaseUrl), 1)
        const nodes = yield* Effect.all(
          Array.from({ length: 4 }, () => Layer.build(Database.layerUrl({ url, poolSize: 2, retry }))),
          { concurrency: "unbounded" }
        )
        const sql = Context.get(nodes[0]!, PgClient.PgClient)
        const [row] = yield* sql<{ n: number; distinct: number }>`
          SELECT count(*)::int AS n, count(DISTINCT migration_id)::int AS distinct FROM effect_sql_migrations`
        expect(row!.n).toBeGreaterThan(0)
        expect(row!.distinct).toBe(row!.n)
      }
    }))
})

/**
 * Embedded PostgreSQL: PGlite behind its Postgres-protocol socket server,
 * so the rest of the code talks to it with the same client as to a real
 * server (STACK-NOTES: "PGlite + pglite-socket").
 */
import { PGlite } from "@electric-sql/pglite"
import { PGLiteSocketServer } from "@electric-sql/pglite-socket"
import { Context, Effect, Layer, Option, Redacted } from "effect"
import { mkdirSync } from "node:fs"
import { StartupError } from "../domain/Errors.ts"

export class Embedded extends Context.Tag("agent-chat/database/Embedded")<Embedded, {
  readonly url: Redacted.Redacted
}>() {}

export const EmbeddedPostgres = (options: {
  readonly dataDir: Option.Option<string>
  /** Must exceed the client pool size: pglite-socket refuses connections past it. */
  readonly maxConnections: number
}): Layer.Layer<Embedded, StartupError> =>
  Layer.scoped(
    Embedded,
    Effect.gen(function*() {
      const db = yield* Effect.acquireRelease(
        Effect.tryPromise(async () => {
          if (Option.isSome(options.dataDir)) mkdirSync(options.dataDir.value, { recursive: true })
          const db = new PGlite(Option.getOrUndefined(options.dataDir))
          await db.waitReady
          return db
        }),
        (db) => Effect.promise(() => db.close()).pipe(Effect.ignore)
      )
      const server = new PGLiteSocketServer({ db, host: "127.0.0.1", port: 0, maxConnections: options.maxConnections })
      yield* Effect.acquireRelease(
        Effect.tryPromise(() => server.start()),
        () => Effect.promise(() => server.stop()).pipe(Effect.ignore)
      )
      const url = Redacted.make(`postgres://postgres@${server.getServerConn()}/postgres?sslmode=disable`)
      return { url }
    }).pipe(
      Effect.mapError((cause) =>
        new StartupError({
          component: "database",
          reason: Option.match(options.dataDir, {
            onNone: () => "the embedded database could not start",
            onSome: (dir) => `the embedded database could not open ${dir}`
          }),
          cause: cause.error
        })
      )
    )
  )

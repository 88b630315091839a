/**
 * Transactions on our own terms. @effect/sql's `withTransaction` turns a
 * failed COMMIT or ROLLBACK into a defect (STACK-NOTES), so a connection
 * lost during a commit escaped every typed handler and left a run that
 * never ended. Here a failed commit is a `DatabaseError` like any other
 * (marked `uncertain`: the server may have committed), and work that must
 * follow a commit (publishing the events it stored) is registered with
 * `afterCommit` and runs once the outermost transaction has committed.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import type { Connection } from "@effect/sql/SqlConnection"
import type { SqlError } from "@effect/sql/SqlError"
import { Effect, Exit, FiberRef, Option } from "effect"
import { DatabaseError } from "../domain/Errors.ts"

/** What must run after the current outermost transaction commits; undefined outside one. */
const pendingHooks = FiberRef.unsafeMake<Array<Effect.Effect<void>> | undefined>(undefined)

const failed = (reason: string, uncertain = false) => (cause: SqlError) =>
  new DatabaseError({ reason, cause, uncertain })

/**
 * Runs `body` with commit hooks collected, for any transaction implementation: `commit(body)` runs the
 * body inside the transaction; on success `onCommit` runs first, then the hooks in the order the body
 * registered them. Nested uses join the outer transaction, and their `onCommit` runs before the hooks
 * registered by their own body.
 */
export const withCommitHooks = <A, E, R, E2, R2>(
  body: Effect.Effect<A, E, R>,
  commit: (body: Effect.Effect<A, E, R>) => Effect.Effect<A, E | E2, R | R2>,
  onCommit?: (a: A) => Effect.Effect<void>
): Effect.Effect<A, E | E2, R | R2> =>
  Effect.flatMap(FiberRef.get(pendingHooks), (outer): Effect.Effect<A, E | E2, R | R2> => {
    if (outer !== undefined) {
      const at = outer.length
      return onCommit === undefined ? body : Effect.tap(body, (a) => {
        outer.splice(at, 0, onCommit(a))
      })
    }
    const hooks: Array<Effect.Effect<void>> = []
    return commit(Effect.locally(body, pendingHooks, hooks)).pipe(
      Effect.tap((a) => Effect.forEach(onCommit === undefined ? hooks : [onCommit(a), ...hooks], (h) => h)),
      Effect.uninterruptible
    )
  })

/**
 * Whether the current fiber is inside a transaction of `withCommitHooks` (either implementation): work
 * done now joins it, and is kept or rolled back with it.
 */
export const inTransaction: Effect.Effect<boolean> = Effect.map(
  FiberRef.get(pendingHooks),
  (hooks) => hooks !== undefined
)

/** Runs `effect` once the current transaction commits (dropped if it rolls back); at once outside one. */
export const afterCommit = (effect: Effect.Effect<void>): Effect.Effect<void> =>
  Effect.flatMap(FiberRef.get(pendingHooks), (hooks) => {
    if (hooks === undefined) return effect
    hooks.push(effect)
    return Effect.void
  })

const run = (conn: Connection, statement: string) => conn.executeUnprepared(statement, [], undefined)

/** The body in one PostgreSQL transaction on a reserved connection; joins the current one if any. */
export const transaction = <A, E, R>(
  body: Effect.Effect<A, E, R>,
  onCommit?: (a: A) => Effect.Effect<void>
): Effect.Effect<A, E | DatabaseError, R | SqlClient.SqlClient> =>
  Effect.flatMap(Effect.serviceOption(SqlClient.TransactionConnection), (current) =>
    withCommitHooks(
      body,
      (inner) =>
        Option.isSome(current) ?
          inner :
          Effect.flatMap(SqlClient.SqlClient, (sql) =>
            Effect.scoped(Effect.uninterruptibleMask((restore) =>
              Effect.gen(function*() {
                const conn = yield* Effect.mapError(sql.reserve, failed("reserve a connection"))
                yield* Effect.mapError(run(conn, "BEGIN"), failed("begin a transaction"))
                const exit = yield* restore(inner).pipe(
                  Effect.provideService(SqlClient.TransactionConnection, [conn, 0] as const),
                  Effect.exit
                )
                if (Exit.isFailure(exit)) {
                  // A broken connection is discarded by the pool; the server rolls back on its own then.
                  yield* Effect.ignore(run(conn, "ROLLBACK"))
                  return yield* exit
                }
                yield* Effect.mapError(run(conn, "COMMIT"), failed("commit", true))
                return exit.value
              })
            )) as Effect.Effect<A, E | DatabaseError, R | SqlClient.SqlClient>),
      onCommit
    ))

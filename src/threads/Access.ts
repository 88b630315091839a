/**
 * Access: the one rule of who may do what in a thread, for the WebSocket
 * and HTTP alike. Members read (join, replay, history), post and cancel
 * its runs; its creator adds and removes members; any member may remove
 * himself. A thread someone may not see is `not_found`, never `forbidden`,
 * so its existence does not leak.
 */
import { Context, Effect, Layer, Option } from "effect"
import type { Principal } from "../auth/Auth.ts"
import { type DatabaseError, RequestError } from "../domain/Errors.ts"
import { Threads } from "./Threads.ts"

export interface MemberChange {
  readonly add: ReadonlyArray<string>
  readonly remove: ReadonlyArray<string>
}

export class Access extends Context.Tag("agent-chat/Access")<Access, {
  /** A member may read the thread; succeeds with its head seq at the moment of the check. */
  readonly read: (principal: Principal, threadId: string) => Effect.Effect<number, RequestError | DatabaseError>
  /**
   * A member may write (post a message, cancel a run): checked with the thread's row locked, inside the
   * write's transaction, so a removal cannot slip between the check and the write.
   */
  readonly write: (principal: Principal, threadId: string) => Effect.Effect<void, RequestError | DatabaseError>
  /** Who may read each of these threads (its members), sorted; none for a thread that does not exist. */
  readonly membersOf: (
    threadIds: ReadonlyArray<string>
  ) => Effect.Effect<ReadonlyMap<string, ReadonlyArray<string>>, DatabaseError>
  /** The creator changes anyone; another member may only remove himself. Locks like `write`. */
  readonly changeMembers: (
    principal: Principal,
    threadId: string,
    change: MemberChange
  ) => Effect.Effect<void, RequestError | DatabaseError>
}>() {}

const notFound = RequestError.notFound("thread")

const make = Effect.gen(function*() {
  const threads = yield* Threads

  const member = (principal: Principal, threadId: string, lock: boolean) =>
    threads.membership(threadId, principal.userId, lock).pipe(
      Effect.flatMap(Option.match({ onNone: () => Effect.fail(notFound), onSome: Effect.succeed }))
    )

  const read = Effect.fn("Access.read")(function*(principal: Principal, threadId: string) {
    return (yield* member(principal, threadId, false)).headSeq
  })

  const write = Effect.fn("Access.write")(function*(principal: Principal, threadId: string) {
    yield* member(principal, threadId, true)
  })

  const changeMembers = Effect.fn("Access.changeMembers")(
    function*(principal: Principal, threadId: string, change: MemberChange) {
      const { createdBy } = yield* member(principal, threadId, true)
      if (createdBy === principal.userId) return
      const onlySelf = change.add.length === 0 && change.remove.every((id) => id === principal.userId)
      if (!onlySelf) {
        return yield* Effect.fail(RequestError.forbidden("only the thread's creator may add members or remove others"))
      }
    }
  )

  return Access.of({ read, write, changeMembers, membersOf: threads.membersOf })
})

export const AccessLive: Layer.Layer<Access, never, Threads> = Layer.effect(Access, make)

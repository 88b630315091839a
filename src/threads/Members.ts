/**
 * Members: changes a thread's members, as Access allows, and stores each
 * change as a `members_changed` event in the same transaction, so it
 * replays like every event and the hubs cut a removed member off at the
 * seq of his removal.
 */
import { Context, Effect, Layer } from "effect"
import type { Principal } from "../auth/Auth.ts"
import { AppConfig } from "../config/AppConfig.ts"
import { type DatabaseError, RequestError } from "../domain/Errors.ts"
import { EventLog } from "../eventlog/EventLog.ts"
import { draft } from "../protocol/Events.ts"
import { Access, type MemberChange } from "./Access.ts"
import { Threads } from "./Threads.ts"

export class Members extends Context.Tag("agent-chat/Members")<Members, {
  /** Applies the change; a change that changes nothing stores nothing. */
  readonly change: (
    principal: Principal,
    threadId: string,
    change: MemberChange
  ) => Effect.Effect<void, RequestError | DatabaseError>
}>() {}

const make = Effect.gen(function*() {
  const threads = yield* Threads
  const access = yield* Access
  const eventLog = yield* EventLog
  const { limits } = yield* AppConfig

  const change = Effect.fn("Members.change")(function*(principal: Principal, threadId: string, change: MemberChange) {
    yield* eventLog.transaction(Effect.gen(function*() {
      yield* access.changeMembers(principal, threadId, change)
      const removed = yield* threads.removeMembers(threadId, change.remove)
      const added = yield* threads.addMembers(threadId, change.add)
      if (added.length > 0 && (yield* threads.memberCount(threadId)) > limits.membersPerThread) {
        return yield* Effect.fail(RequestError.invalid(`a thread has at most ${limits.membersPerThread} members`))
      }
      if (added.length === 0 && removed.length === 0) return
      yield* eventLog.append(threadId, [draft("members_changed", null, { added, removed, by: principal.userId })])
    })).pipe(
      // The thread was checked under its lock, so the log cannot refuse this event.
      Effect.catchTag("LifecycleError", () => Effect.fail(RequestError.notFound("thread")))
    )
  })

  return Members.of({ change })
})

export const MembersLive: Layer.Layer<Members, never, Threads | Access | EventLog | AppConfig> = Layer.effect(
  Members,
  make
)

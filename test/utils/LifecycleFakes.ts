/**
 * The fakes of the run-lifecycle world, for what production keeps in SQL
 * or outside the server: the threads repository (its messages), the
 * store as one process reaches it over its own connection, the tools and
 * the model. A lost connection answers late and with an error, as a
 * connection attempt that times out does.
 */
import { Clock, Effect, Exit, Layer } from "effect"
import { randomUUID } from "node:crypto"
import { afterCommit } from "../../src/database/Transaction.ts"
import { DatabaseError } from "../../src/domain/Errors.ts"
import type { EventStore } from "../../src/eventlog/EventStore.ts"
import { ToolError } from "../../src/runs/Tool.ts"
import { Tools } from "../../src/runs/ToolDispatcher.ts"
import { Threads } from "../../src/threads/Threads.ts"
import { ANSWER_OUTPUT, type Script, SLOW_OUTPUT, TIMING, TOOL_FAILURE } from "./LifecycleScenario.ts"
import { call, delta, scriptedModel, thinking } from "./Models.ts"

export const tools = Layer.succeed(
  Tools,
  [
    { name: "answer", run: () => Effect.succeed(ANSWER_OUTPUT) },
    { name: "fail", run: () => Effect.fail(new ToolError({ message: TOOL_FAILURE })) },
    { name: "hang", run: () => Effect.never },
    {
      name: "slow",
      run: (input: unknown) => Effect.as(Effect.sleep((input as { readonly ms: number }).ms), SLOW_OUTPUT)
    }
  ].map((tool) => ({ ...tool, description: tool.name, parameters: { type: "object" } }))
)

/** The model plays the script its run's message names (the message's content is the script's key). */
export const model = (scripts: ReadonlyMap<string, Script>) =>
  scriptedModel((messages) => {
    const last = messages.length - 1 - [...messages].reverse().findIndex((m) => m.role === "user")
    const user = messages[last]
    const turns = scripts.get(user?.role === "user" ? user.content : "") ?? []
    // The turns of this run: the history before its message holds the earlier runs' own.
    const step = messages.slice(last).filter((m) => m.role === "assistant").length
    return (turns[step] ?? []).map((chunk) =>
      "think" in chunk ?
        thinking(chunk.think) :
        "say" in chunk ?
        delta(chunk.say) :
        call(chunk.id, chunk.call, chunk.ms === undefined ? {} : { ms: chunk.ms })
    )
  })

interface Message {
  readonly message_id: string
  readonly user_id: string
  readonly content: string
  readonly created_at: string
}

const lostError = (what: string) => new DatabaseError({ reason: what, cause: "the database is lost" })

/**
 * Fails like the database while `lost()`, else runs `effect`. A lost database answers late, with an
 * error (a connection attempt that times out), so the work that meets it is delayed too.
 */
const unless =
  (lost: () => boolean, what: string) =>
  <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E | DatabaseError, R> =>
    Effect.suspend((): Effect.Effect<A, E | DatabaseError, R> =>
      lost() ? Effect.zipRight(Effect.sleep(TIMING.lostAnswer), Effect.fail(lostError(what))) : effect
    )

/** The messages of every thread, one table for both processes, as in the database. */
export type MessageTable = Map<string, Array<Message>>

/** Messages, kept only once their transaction commits; unreachable while `lost()`. */
export const threads = (messages: MessageTable, lost: () => boolean) => {
  const unused = () => Effect.die("not used by the lifecycle property")
  return Layer.succeed(
    Threads,
    Threads.make({
      create: unused,
      listForUser: unused,
      describe: unused,
      membership: unused,
      memberCount: () => Effect.succeed(1).pipe(unless(lost, "count members")),
      membersOf: unused,
      addMembers: unused,
      removeMembers: unused,
      insertMessage: (input) =>
        Effect.gen(function*() {
          const messageId = randomUUID()
          const message: Message = {
            message_id: messageId,
            user_id: input.userId,
            content: input.content,
            created_at: new Date(0).toISOString()
          }
          const keep = Effect.sync(() => messages.set(input.threadId, [...messages.get(input.threadId) ?? [], message]))
          yield* afterCommit(keep)
          return messageId
        }).pipe(unless(lost, "insert message")),
      searchMessages: () => Effect.succeed([])
    })
  )
}

/** One attempt of a process to renew its leases: when it began, and whether it reached the store. */
export interface Renewal {
  readonly at: number
  readonly ok: boolean
}

/**
 * The store as one process reaches it: every operation fails like a lost database while `lost()`.
 * Its lease renewals are told to `renewed`, so that a lapsed lease can be traced to failed renewals.
 */
export const reachable = (
  store: EventStore["Type"],
  lost: () => boolean,
  renewed: (renewal: Renewal) => void
): EventStore["Type"] => {
  const guard = unless(lost, "reach the database")
  const wrapped = Object.fromEntries(
    Object.entries(store).map(([name, member]) => [
      name,
      // Registering a commit hook is not a query; everything else is, the transaction's BEGIN included.
      name === "afterCommit" ?
        member :
        Effect.isEffect(member) ?
        guard(member as Effect.Effect<unknown, unknown>) :
        (...args: Array<never>) => guard((member as (...args: Array<never>) => Effect.Effect<unknown>)(...args))
    ])
  ) as unknown as EventStore["Type"]
  return {
    ...wrapped,
    renewLeases: (owner, runIds, lease) =>
      Effect.flatMap(Clock.currentTimeMillis, (at) =>
        wrapped.renewLeases(owner, runIds, lease).pipe(
          Effect.onExit((exit) => Effect.sync(() => renewed({ at, ok: Exit.isSuccess(exit) })))
        ))
  }
}

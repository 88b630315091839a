/**
 * A session over the hub of GatewayHarness, with fakes for the services
 * requests need beyond it: a Supervisor whose `send` stores a message and
 * a short run through the real event log, Threads whose `create` can lose
 * the database, Auth, Members and a DatabaseMonitor that counts nudges.
 */
import { Context, Effect, Option } from "effect"
import { randomUUID } from "node:crypto"
import { Auth, AuthError } from "../../src/auth/Auth.ts"
import type { AppConfigShape } from "../../src/config/AppConfig.ts"
import { DatabaseMonitor } from "../../src/database/Monitor.ts"
import { DatabaseError, RequestError } from "../../src/domain/Errors.ts"
import { up } from "../../src/domain/Health.ts"
import { makeSession } from "../../src/gateway/Session.ts"
import { draft } from "../../src/protocol/Events.ts"
import { Supervisor } from "../../src/runs/Supervisor.ts"
import { Members } from "../../src/threads/Members.ts"
import { Threads } from "../../src/threads/Threads.ts"
import { FakeSocket, pause } from "./FakeSocket.ts"
import { type HubEnv, makeHubEnv, principal } from "./GatewayHarness.ts"

/** The title whose `create_thread` fails as if the database were lost. */
export const LOSE_THE_DATABASE = "lose the database"
/** The id every other `create_thread` gets. */
export const NEW_THREAD = "00000000-0000-4000-8000-000000000001"

const unused = () => Effect.dieMessage("not used by the gateway")

const fakes = (env: HubEnv, nudges: { count: number }) => {
  const supervisor = Supervisor.of({
    send: (who, threadId, content, accepted) =>
      Effect.gen(function*() {
        const messageId = randomUUID()
        // Like the real one: `accepted` runs once the message and the run's start are committed, before
        // they are published.
        const runId = yield* env.log.transaction(
          Effect.gen(function*() {
            yield* env.log.append(threadId, [
              draft("message_created", null, { message_id: messageId, user_id: who.userId, content })
            ])
            return Option.getOrThrow(yield* env.log.startRun({ threadId, messageId, agent: "fake" }))
          }),
          (runId) => accepted({ messageId, runId })
        )
        yield* env.log.append(threadId, [draft("agent_response_delta", runId, { delta: "hi" })])
        yield* env.log.endRun(threadId, runId, {
          status: "completed",
          event: draft("agent_completed", runId, { response: "hi", duration_ms: 1 }),
          eventId: randomUUID()
        })
        // The hub delivers the run's events before the request ends: an ack sent only now would come last.
        yield* pause(20)
        return { messageId, runId }
      }).pipe(Effect.catchTag("LifecycleError", Effect.die)),
    cancel: (_who, runId) => runId === "unknown" ? Effect.fail(RequestError.notFound("run")) : Effect.void,
    activeRuns: Effect.succeed(0),
    drain: () => Effect.void,
    health: Effect.succeed(up())
  })
  const threads = Threads.make({
    create: (input) =>
      input.title === LOSE_THE_DATABASE
        ? Effect.fail(new DatabaseError({ reason: "create thread" }))
        : Effect.succeed(NEW_THREAD),
    listForUser: unused,
    describe: unused,
    membership: unused,
    memberCount: unused,
    membersOf: unused,
    addMembers: unused,
    removeMembers: unused,
    insertMessage: unused,
    searchMessages: unused
  })
  const auth = Auth.of({
    verify: (token) =>
      token.startsWith("user:")
        ? Effect.succeed(principal(token.slice("user:".length)))
        : Effect.fail(new AuthError({ reason: "bad token signature" })),
    algorithms: ["HS256"]
  })
  const monitor = DatabaseMonitor.of({
    isUp: () => true,
    nudge: Effect.sync(() => {
      nudges.count++
    }),
    health: Effect.succeed(up())
  })
  return Context.make(Supervisor, supervisor).pipe(
    Context.add(Threads, threads),
    Context.add(Auth, auth),
    Context.add(Members, Members.of({ change: () => Effect.void })),
    Context.add(DatabaseMonitor, monitor)
  )
}

export const makeSessionEnv = (overrides: Partial<AppConfigShape> = {}) =>
  Effect.gen(function*() {
    const env = yield* makeHubEnv(overrides)
    const nudges = { count: 0 }
    const session = yield* makeSession.pipe(Effect.provide(Context.merge(env.context, fakes(env, nudges))))

    /** Opens a session on a fake socket, wired as the adapter wires a real one. */
    const open = (userId: string) => {
      const socket = new FakeSocket()
      const events = session.open(socket, principal(userId))
      socket.onClosed = events.closed
      const send = (frame: object | string) =>
        events.message(typeof frame === "string" ? frame : JSON.stringify(frame), false)
      return { socket, events, send }
    }

    return { ...env, nudges, open }
  })

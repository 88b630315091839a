/**
 * The world of the run-lifecycle property: one in-memory event store and
 * two server processes on it, each built from the real layers (EventLogLive,
 * BrokerInProcess, ToolDispatcherLive, SupervisorLive with its leases), so
 * each has its own owner id and sweeps the other's expired runs. Fakes only
 * where production needs SQL: the threads repository (messages), access
 * (everyone is a member) and the database monitor. Each process reaches
 * the store and the messages through its own connection, which fails like
 * a lost database while the database is down or that process is cut off.
 * Every src/ import of the property's modules is here, so that a move of
 * source files touches one import block.
 */
import { Context, Duration, Effect, HashMap, Layer, Logger, Option } from "effect"
import { randomUUID } from "node:crypto"
import { AppConfigTest } from "../../src/config/AppConfig.ts"
import { DatabaseMonitor } from "../../src/database/Monitor.ts"
import { Threads } from "../../src/database/Threads.ts"
import { afterCommit } from "../../src/database/Transaction.ts"
import { DatabaseError, type StartupError } from "../../src/domain/Errors.ts"
import { BrokerInProcess } from "../../src/eventlog/Broker.ts"
import { EventLogLive } from "../../src/eventlog/EventLog.ts"
import { EventStore } from "../../src/eventlog/EventStore.ts"
import { makeMemoryStore, type MemoryStore } from "../../src/eventlog/MemoryEventStore.ts"
import { Supervisor, SupervisorLive } from "../../src/runs/Supervisor.ts"
import { ToolError } from "../../src/runs/Tool.ts"
import { ToolDispatcherLive, Tools } from "../../src/runs/ToolDispatcher.ts"
import { Access } from "../../src/threads/Access.ts"
import {
  ANSWER_OUTPUT,
  type Script,
  SLOW_OUTPUT,
  THREADS,
  TIMING,
  TOOL_FAILURE,
  type Via
} from "./LifecycleScenario.ts"
import { call, delta, scriptedModel, thinking } from "./Models.ts"

export type { StoredEvent } from "../../src/domain/Events.ts"
export { INTERRUPTED } from "../../src/eventlog/EventLog.ts"
export type { RunRecord } from "../../src/eventlog/EventStore.ts"
export { ORPHANED } from "../../src/runs/Leases.ts"

export const principal = { userId: "u1", expiresAt: Option.none<number>() }

export interface LogEntry {
  readonly message: string
  readonly annotations: Readonly<Record<string, unknown>>
}

export interface World {
  readonly memory: MemoryStore
  /** The process whose connection to the database is lost (0: none), while the database itself is up. */
  readonly cut: { process: 0 | Via }
  readonly processes: readonly [Supervisor["Type"], Supervisor["Type"]]
  /** Everything the processes logged: the refusals and the runs' ends are read from here. */
  readonly logs: ReadonlyArray<LogEntry>
}

const config = AppConfigTest({
  toolTimeout: Duration.millis(TIMING.toolTimeout),
  runTimeout: Duration.millis(TIMING.runTimeout),
  runLease: Duration.millis(TIMING.runLease),
  maxAgentSteps: TIMING.maxAgentSteps,
  databaseCheck: {
    interval: Duration.seconds(1),
    timeout: Duration.seconds(1),
    reconnectBase: Duration.millis(TIMING.reconnectBase),
    reconnectMax: Duration.millis(TIMING.reconnectMax)
  }
})

const tools = Layer.succeed(
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
const model = (scripts: ReadonlyMap<string, Script>) =>
  scriptedModel((messages) => {
    const user = [...messages].reverse().find((m) => m.role === "user")
    const turns = scripts.get(user?.content ?? "") ?? []
    const step = messages.filter((m) => m.role === "assistant").length
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

/** Fails like the database while `lost()`, else runs `effect`. */
const unless =
  (lost: () => boolean, what: string) =>
  <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E | DatabaseError, R> =>
    Effect.suspend((): Effect.Effect<A, E | DatabaseError, R> => lost() ? Effect.fail(lostError(what)) : effect)

/** The messages of every thread, one table for both processes, as in the database. */
type MessageTable = Map<string, Array<Message>>

/** Messages, kept only once their transaction commits; unreachable while `lost()`. */
const threads = (messages: MessageTable, lost: () => boolean) => {
  const unused = () => Effect.die("not used by the lifecycle property")
  return Layer.succeed(
    Threads,
    Threads.make({
      create: unused,
      listForUser: unused,
      describe: unused,
      membership: unused,
      memberCount: unused,
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
      searchMessages: () => Effect.succeed([]),
      recentMessages: (threadId, limit) =>
        Effect.sync(() => (messages.get(threadId) ?? []).slice(-limit)).pipe(unless(lost, "read messages"))
    })
  )
}

/** The store as one process reaches it: every operation fails like a lost database while `lost()`. */
const reachable = (store: EventStore["Type"], lost: () => boolean): EventStore["Type"] => {
  const guard = unless(lost, "reach the database")
  const wrapped = Object.fromEntries(
    Object.entries(store).map(([name, member]) => [
      name,
      // Registering a commit hook is not a query; everything else is, the transaction's BEGIN included.
      name === "afterCommit" ?
        member :
        Effect.isEffect(member) ?
        guard(member) :
        (...args: Array<never>) => guard((member as (...args: Array<never>) => Effect.Effect<unknown>)(...args))
    ])
  )
  return wrapped as unknown as EventStore["Type"]
}

const collect = (into: Array<LogEntry>) =>
  Logger.replace(
    Logger.defaultLogger,
    Logger.make(({ annotations, message }) => {
      into.push({
        message: String(Array.isArray(message) ? message[0] : message),
        annotations: Object.fromEntries(HashMap.toEntries(annotations))
      })
    })
  )

/**
 * One process: its own event log (so its own owner id), broker, dispatcher and supervisor, and its own
 * connection to the shared store and messages, lost with the database or on its own (`World.cut`).
 */
const serverProcess = (
  memory: MemoryStore,
  messages: MessageTable,
  lost: () => boolean,
  scripts: ReadonlyMap<string, Script>
) => {
  const eventLog = EventLogLive.pipe(
    Layer.provide(Layer.mergeAll(Layer.succeed(EventStore, reachable(memory.store, lost)), BrokerInProcess, config))
  )
  const dispatcher = ToolDispatcherLive.pipe(Layer.provide(Layer.merge(tools, config)))
  const access = Layer.succeed(Access, {
    read: () => Effect.succeed(0),
    write: () => Effect.void,
    changeMembers: () => Effect.void
  })
  const monitor = Layer.succeed(DatabaseMonitor, {
    isUp: () => !lost(),
    nudge: Effect.void,
    health: Effect.succeed({ status: "up" as const })
  })
  return SupervisorLive.pipe(
    Layer.provide(
      Layer.mergeAll(eventLog, dispatcher, model(scripts), threads(messages, lost), access, monitor, config)
    )
  )
}

const build = (scripts: ReadonlyMap<string, Script>, logs: ReadonlyArray<LogEntry>) =>
  Effect.gen(function*() {
    const memory = yield* makeMemoryStore
    for (const thread of THREADS) memory.createThread(thread)
    const messages: MessageTable = new Map()
    const cut = { process: 0 as 0 | Via }
    const lost = (via: Via) => () => memory.faults.down || cut.process === via
    // Two builds, so that the processes share nothing but the store and the messages.
    const first = yield* Effect.annotateLogs(
      Layer.build(serverProcess(memory, messages, lost(1), scripts)),
      "process",
      1
    )
    const second = yield* Effect.annotateLogs(
      Layer.build(serverProcess(memory, messages, lost(2), scripts)),
      "process",
      2
    )
    const processes = [Context.get(first, Supervisor), Context.get(second, Supervisor)] as const
    return { memory, cut, processes, logs } satisfies World
  })

/**
 * Runs `body` in a new world, closed when it ends. Every fiber of the world logs into `World.logs`
 * instead of the console.
 */
export const inWorld = <A, E>(
  scripts: ReadonlyMap<string, Script>,
  body: (world: World) => Effect.Effect<A, E>
): Effect.Effect<A, E | StartupError> => {
  const logs: Array<LogEntry> = []
  return Effect.scoped(Effect.flatMap(build(scripts, logs), body)).pipe(Effect.provide(collect(logs)))
}

/**
 * The world of the run-lifecycle property: one in-memory event store and
 * two server processes on it, each built from the real layers (EventLogLive,
 * BrokerInProcess, ToolDispatcherLive, SupervisorLive with its leases), so
 * each has its own owner id and sweeps the other's expired runs. Fakes only
 * where production needs SQL (LifecycleFakes.ts), access (everyone is a
 * member) and the database monitor. Each process reaches the store and the
 * messages through its own connection, which fails like a lost database
 * while the database is down or that process is cut off. The src/ imports
 * of the property's modules are here and in LifecycleFakes.ts only, so that
 * a move of source files touches two import blocks.
 */
import { Context, Duration, Effect, HashMap, Layer, Logger, Option } from "effect"
import { AppConfigTest } from "../../src/config/AppConfig.ts"
import { DatabaseMonitor } from "../../src/database/Monitor.ts"
import type { StartupError } from "../../src/domain/Errors.ts"
import { BrokerInProcess } from "../../src/eventlog/Broker.ts"
import { EventLogLive } from "../../src/eventlog/EventLog.ts"
import { EventStore } from "../../src/eventlog/EventStore.ts"
import { makeMemoryStore, type MemoryStore } from "../../src/eventlog/MemoryEventStore.ts"
import { ModelStatusLive } from "../../src/llm/ModelStatus.ts"
import { Supervisor, SupervisorLive } from "../../src/runs/Supervisor.ts"
import { ToolDispatcherLive } from "../../src/runs/ToolDispatcher.ts"
import { Access } from "../../src/threads/Access.ts"
import { type MessageTable, model, reachable, type Renewal, threads, tools } from "./LifecycleFakes.ts"
import { type Script, THREADS, TIMING, type Via } from "./LifecycleScenario.ts"

export { INTERRUPTED } from "../../src/eventlog/EventLog.ts"
export type { StoredEvent } from "../../src/protocol/Events.ts"
import type { RunRecord as StoredRun } from "../../src/eventlog/EventStore.ts"
/** A run as the memory store keeps it (its lease is judged when read). */
export type RunRecord = Omit<StoredRun, "leaseExpired">
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
  /** Each process's attempts to renew its leases, in order. */
  readonly renewals: readonly [ReadonlyArray<Renewal>, ReadonlyArray<Renewal>]
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
  renewals: Array<Renewal>,
  scripts: ReadonlyMap<string, Script>
) => {
  const store = reachable(memory.store, lost, (renewal) => renewals.push(renewal))
  const eventLog = EventLogLive.pipe(
    Layer.provide(Layer.mergeAll(Layer.succeed(EventStore, store), BrokerInProcess, config))
  )
  const dispatcher = ToolDispatcherLive.pipe(Layer.provide(Layer.merge(tools, config)))
  const access = Layer.succeed(Access, {
    read: () => Effect.succeed(0),
    write: () => Effect.void,
    changeMembers: () => Effect.void,
    membersOf: (threadIds) => Effect.succeed(new Map(threadIds.map((id) => [id, []])))
  })
  const monitor = Layer.succeed(DatabaseMonitor, {
    isUp: () => !lost(),
    nudge: Effect.void,
    health: Effect.succeed({ status: "up" as const })
  })
  return SupervisorLive.pipe(
    Layer.provide(
      Layer.mergeAll(
        eventLog,
        dispatcher,
        ModelStatusLive.pipe(Layer.provideMerge(model(scripts))),
        threads(messages, lost),
        access,
        monitor,
        config
      )
    )
  )
}

const build = (scripts: ReadonlyMap<string, Script>, stagger: number, logs: ReadonlyArray<LogEntry>) =>
  Effect.gen(function*() {
    const memory = yield* makeMemoryStore
    for (const thread of THREADS) memory.createThread(thread)
    const messages: MessageTable = new Map()
    const cut = { process: 0 as 0 | Via }
    const lost = (via: Via) => () => memory.faults.down || cut.process === via
    const renewals: readonly [Array<Renewal>, Array<Renewal>] = [[], []]
    // Two builds, so that the processes share nothing but the store and the messages.
    const first = yield* Effect.annotateLogs(
      Layer.build(serverProcess(memory, messages, lost(1), renewals[0], scripts)),
      "process",
      1
    )
    yield* Effect.sleep(stagger)
    const second = yield* Effect.annotateLogs(
      Layer.build(serverProcess(memory, messages, lost(2), renewals[1], scripts)),
      "process",
      2
    )
    const processes = [Context.get(first, Supervisor), Context.get(second, Supervisor)] as const
    return { memory, cut, processes, logs, renewals } satisfies World
  })

/**
 * Runs `body` in a new world, closed when it ends, its second process started `stagger` ms after the
 * first. Every fiber of the world logs into `World.logs` instead of the console.
 */
export const inWorld = <A, E>(
  scripts: ReadonlyMap<string, Script>,
  stagger: number,
  body: (world: World) => Effect.Effect<A, E>
): Effect.Effect<A, E | StartupError> => {
  const logs: Array<LogEntry> = []
  return Effect.scoped(Effect.flatMap(build(scripts, stagger, logs), body)).pipe(Effect.provide(collect(logs)))
}

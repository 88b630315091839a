/**
 * Plays a scenario against the world and records what the oracle needs:
 * every answer the processes gave (sends, cancels), when the database was
 * lost and when a failing commit was pending, and, once the database is
 * back and everything has settled, the stored runs and events and what the
 * processes logged. It judges nothing itself.
 */
import { Clock, Effect, Either } from "effect"
import { type Action, type Scenario, THREADS, type Via } from "./LifecycleScenario.ts"
import { inWorld, type LogEntry, principal, type RunRecord, type StoredEvent, type World } from "./LifecycleWorld.ts"

export interface SendRecord {
  readonly index: number
  readonly thread: string
  readonly via: Via
  /** "ok", or the error: a RequestError's code, "database", or "uncertain" when its commit may have applied. */
  readonly answer: string
  readonly runId?: string | null
}

export interface CancelRecord {
  readonly index: number
  readonly via: Via
  readonly runId: string
  /** Undefined while the cancel has not answered. */
  answer?: string
}

/** A span of virtual time, in ms; `to` is undefined while it lasts. */
export interface Interval {
  readonly from: number
  to: number | undefined
}

/** A span without the database: for both processes, or for the one cut off. */
export interface Outage extends Interval {
  readonly process?: Via
}

/** A stored event, its data read as a record (the oracle tells the event types apart). */
export type Event = Omit<StoredEvent, "data"> & { readonly data: Readonly<Record<string, any>> }

export interface Observation {
  readonly sends: ReadonlyArray<SendRecord>
  readonly cancels: ReadonlyArray<CancelRecord>
  /** When the database was lost, or one process's connection to it. */
  readonly outages: ReadonlyArray<Outage>
  /** When a commit failure was pending, from being set to being spent. */
  readonly commitFaults: ReadonlyArray<Interval>
  /** Active runs of each process once settled. */
  readonly activeRuns: readonly [number, number]
  readonly runs: ReadonlyArray<RunRecord>
  readonly events: ReadonlyMap<string, ReadonlyArray<Event>>
  readonly logs: ReadonlyArray<LogEntry>
  /** Each process's attempts to renew its leases. */
  readonly renewals: World["renewals"]
}

/** The messages' contents name their scripts: `s<index of the send action>`. */
export const scriptKey = (index: number) => `s${index}`

/**
 * How long (virtual) things in flight get to end once the database is back: settling stops as soon as
 * it is quiet, and this bound is far above a run timeout plus a lease plus an end's retries.
 */
const SETTLE_STEP = 250
const SETTLE_STEPS = 40

const errorCode = (error: { readonly _tag: string; readonly code?: string; readonly uncertain?: boolean }) =>
  error._tag === "RequestError" ? error.code ?? "request" : error.uncertain === true ? "uncertain" : "database"

const play = (scenario: Scenario, world: World) =>
  Effect.gen(function*() {
    const { faults } = world.memory
    const sends: Array<SendRecord> = []
    const cancels: Array<CancelRecord> = []
    const outages: Array<Outage> = []
    const commitFaults: Array<Interval> = []
    const now = Clock.currentTimeMillis

    // The store spends a pending commit failure by clearing `nextCommit`: noted the moment it does.
    const clock = yield* Effect.clock
    let nextCommit = faults.nextCommit
    Object.defineProperty(faults, "nextCommit", {
      get: () => nextCommit,
      set: (value: typeof nextCommit) => {
        if (value === undefined) { for (const fault of commitFaults) fault.to ??= clock.unsafeCurrentTimeMillis() }
        nextCommit = value
      }
    })
    const latestRun = (thread: string) => world.memory.runs().filter((run) => run.threadId === thread).at(-1)

    const step = (action: Action, index: number) =>
      Effect.gen(function*() {
        if ("send" in action) {
          const thread = THREADS[action.thread]!
          const answer = yield* world.processes[action.via - 1]!.send(
            principal,
            thread,
            scriptKey(index),
            () => Effect.void
          ).pipe(Effect.annotateLogs("process", action.via), Effect.either)
          sends.push(
            Either.isRight(answer) ?
              { index, thread, via: action.via, answer: "ok", runId: answer.right.runId } :
              { index, thread, via: action.via, answer: errorCode(answer.left) }
          )
        } else if ("cancel" in action) {
          const run = latestRun(THREADS[action.cancel]!)
          if (run === undefined) return
          const record: CancelRecord = { index, via: action.via, runId: run.runId }
          cancels.push(record)
          // Forked: a cancel answers once the run's end is stored, which waits for the database.
          yield* world.processes[action.via - 1]!.cancel(principal, run.runId).pipe(
            Effect.either,
            Effect.map((answer) => record.answer = Either.isRight(answer) ? "ok" : errorCode(answer.left)),
            Effect.annotateLogs("process", action.via),
            Effect.forkDaemon
          )
        } else if ("wait" in action) {
          yield* Effect.sleep(action.wait)
        } else if ("down" in action) {
          const at = yield* now
          if (action.down && !faults.down) outages.push({ from: at, to: undefined })
          if (!action.down && faults.down) outages.find((o) => o.process === undefined && o.to === undefined)!.to = at
          faults.down = action.down
        } else if ("cut" in action) {
          if (action.cut === world.cut.process) return
          const at = yield* now
          if (world.cut.process !== 0) {
            outages.find((o) => o.process === world.cut.process && o.to === undefined)!.to = at
          }
          if (action.cut !== 0) outages.push({ from: at, to: undefined, process: action.cut })
          world.cut.process = action.cut
        } else {
          // A failure set while another is pending replaces it: the earlier one is spent unused.
          faults.nextCommit = undefined
          commitFaults.push({ from: yield* now, to: undefined })
          faults.nextCommit = action.failCommit
        }
      })

    yield* Effect.forEach(scenario.actions, step, { discard: true })

    // At rest: the database back for good, then time for everything in flight to end.
    const back = yield* now
    for (const outage of outages) outage.to ??= back
    faults.down = false
    world.cut.process = 0
    faults.nextCommit = undefined
    const activeRuns = Effect.all([world.processes[0].activeRuns, world.processes[1].activeRuns])
    for (let i = 0; i < SETTLE_STEPS; i++) {
      const [first, second] = yield* activeRuns
      const quiet = first === 0 && second === 0 && cancels.every((c) => c.answer !== undefined) &&
        world.memory.runs().every((run) => run.status !== "running")
      if (quiet) break
      yield* Effect.sleep(SETTLE_STEP)
    }
    return {
      sends,
      cancels,
      outages,
      commitFaults,
      activeRuns: yield* activeRuns,
      runs: world.memory.runs(),
      events: new Map(THREADS.map((thread) => [thread, world.memory.events(thread).map((e) => e as Event)])),
      logs: [...world.logs],
      renewals: world.renewals
    } satisfies Observation
  })

/** Plays the scenario in a new world. */
export const drive = (scenario: Scenario) => {
  const scripts = new Map(
    scenario.actions.flatMap((action, index) => "send" in action ? [[scriptKey(index), action.send] as const] : [])
  )
  return inWorld(scripts, scenario.stagger, (world) => play(scenario, world))
}

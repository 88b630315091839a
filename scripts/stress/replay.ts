/**
 * Reconnect and replay during streaming runs. An owner keeps a run
 * streaming in every thread; observers, each a member of some threads,
 * drop their connection at random moments (mostly abruptly, sometimes with
 * a close handshake), reconnect and rejoin with `after_seq` = the last seq
 * they kept. Every observer's union of events per thread must be exactly
 * 1..head, each once, in order, ending with the last run's terminal event.
 */
import type { EventFrame } from "../../test/utils/ChatClient.ts"
import type { StressClient } from "./client.ts"
import { type Budget, errorMessage, type Invariant, sleep, waitUntil } from "./common.ts"
import { Random } from "./random.ts"
import { type Observer, report, type ThreadState } from "./replay-report.ts"
import { pacedModel, startServer, type StressServer } from "./server.ts"
import { isTerminal, RunCheck, Semaphore, storedLog, ThreadTrack } from "./tracks.ts"

export interface ReplayConfig {
  readonly seed: number
  /** Disconnect/reconnect cycles that happen while a run of the observer's threads is streaming, in all. */
  readonly cycles: number
  readonly observers: number
  readonly threads: number
  readonly threadsPerObserver: number
  /** Each run streams this many deltas, `pieceDelayMs` apart. */
  readonly pieces: number
  readonly pieceDelayMs: number
  /** An observer stays connected for a random time up to this before dropping. */
  readonly maxDwellMs: number
  /** Reconnects in flight at once: each costs a few queries, and the embedded database is slow. */
  readonly reconnectWidth: number
}

export const replayScenario = async (config: ReplayConfig, budget: Budget): Promise<Array<Invariant>> => {
  const random = new Random(config.seed, "replay")
  const server = await startServer({ model: pacedModel(config.pieces, config.pieceDelayMs) })
  try {
    return await run(server, config, budget, random)
  } finally {
    await server.close()
  }
}

const run = async (server: StressServer, config: ReplayConfig, budget: Budget, random: Random) => {
  const owner = await server.connect("owner")
  const assignment = Array.from(
    { length: config.observers },
    (_, i) => random.fork(`members-${i}`).sample(range(config.threads), random.int(1, config.threadsPerObserver))
  )
  const threads: Array<ThreadState> = []
  for (let t = 0; t < config.threads; t++) {
    const members = assignment.flatMap((indexes, i) => indexes.includes(t) ? [`observer-${i}`] : [])
    const { thread_id } = await owner.request({ type: "create_thread", title: `replay ${t}`, members })
    const canonical = new Map<number, string>()
    threads.push({
      id: thread_id,
      canonical,
      owner: new ThreadTrack(canonical),
      activeRun: undefined,
      completed: 0,
      failed: 0
    })
  }
  const byId = new Map(threads.map((t) => [t.id, t]))
  const ended = new Set<string>()
  const endWaiters = new Map<string, () => void>()
  let ownerForeign = 0
  owner.onEvent = (event: EventFrame) => {
    const thread = byId.get(event.thread_id)
    if (thread === undefined) return void ownerForeign++
    thread.owner.accept(event)
    if (event.run_id !== null && isTerminal(event)) {
      if (event.event_type === "agent_completed") thread.completed++
      else thread.failed++
      ended.add(event.run_id)
      if (thread.activeRun === event.run_id) thread.activeRun = undefined
      endWaiters.get(event.run_id)?.()
    }
  }
  for (const thread of threads) await owner.request({ type: "join_thread", thread_id: thread.id, after_seq: 0 })

  let stopping = false
  const runLimitMs = config.pieces * config.pieceDelayMs + 60_000
  const drive = async (thread: ThreadState) => {
    while (!stopping) {
      budget.check("driving runs")
      const ack = await owner.request(
        { type: "send_message", thread_id: thread.id, content: `go ${thread.completed + thread.failed + 1}` },
        budget.timeout(30_000)
      ).catch((error) => {
        throw new Error(`owner sending to ${thread.id}: ${errorMessage(error)}`)
      })
      const runId = ack.run_id as string
      if (ended.has(runId)) continue
      thread.activeRun = runId
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`run ${runId} did not end within ${runLimitMs} ms`)),
          budget.timeout(runLimitMs)
        )
        endWaiters.set(runId, () => {
          clearTimeout(timer)
          endWaiters.delete(runId)
          resolve()
        })
      })
    }
  }
  const drivers = Promise.all(threads.map(drive))
  // A rejected driver must not go unhandled while the observers still run.
  drivers.catch(() => {})

  const observers: Array<Observer> = assignment.map((indexes, i) => ({
    user: `observer-${i}`,
    threads: indexes.map((t) => threads[t]!),
    tracks: new Map(indexes.map((t) => [threads[t]!.id, new ThreadTrack(threads[t]!.canonical)])),
    cycles: 0,
    midRun: 0,
    replayed: 0,
    foreign: 0,
    unreadable: 0,
    reconnectErrors: 0,
    lastError: undefined,
    client: undefined
  }))
  const reconnects = new Semaphore(config.reconnectWidth)
  const quota = Math.ceil(config.cycles / config.observers)

  /** Connects and rejoins every thread after the last seq kept; replayed events follow each ack. */
  const attach = async (observer: Observer): Promise<StressClient> => {
    for (let attempt = 1;; attempt++) {
      budget.check(`reconnecting ${observer.user}`)
      let client: StressClient | undefined
      try {
        client = await server.connect(observer.user, budget.timeout(10_000))
        const joined = new Map<string, number>()
        const current = client
        client.onEvent = (event) => {
          const track = observer.tracks.get(event.thread_id)
          if (track === undefined) return void observer.foreign++
          if (event.seq <= (joined.get(event.thread_id) ?? 0)) observer.replayed++
          track.accept(event)
        }
        await Promise.all(observer.threads.map((thread) =>
          current.request(
            { type: "join_thread", thread_id: thread.id, after_seq: observer.tracks.get(thread.id)!.last },
            budget.timeout(20_000),
            (ack) => joined.set(thread.id, ack.head_seq as number)
          ).catch((error) => {
            throw new Error(`${observer.user} joining ${thread.id}: ${errorMessage(error)}`)
          })
        ))
        observer.client = client
        return client
      } catch (error) {
        observer.reconnectErrors++
        observer.lastError = errorMessage(error)
        if (client !== undefined) {
          observer.unreadable += client.unreadable
          client.terminate()
        }
        if (attempt >= 3) throw error
      }
    }
  }

  const cycle = async (observer: Observer, rng: Random) => {
    let client = await reconnects.with(() => attach(observer))
    for (let attempts = 0; observer.midRun < quota && attempts < quota * 5; attempts++) {
      budget.check(`cycling ${observer.user}`)
      await sleep(rng.int(0, config.maxDwellMs))
      const midRun = observer.threads.some((t) => t.activeRun !== undefined)
      observer.unreadable += client.unreadable
      if (rng.chance(0.75)) client.terminate()
      else client.close(rng.pick([1000, 1001]))
      observer.cycles++
      if (midRun) observer.midRun++
      client = await reconnects.with(() => attach(observer))
    }
  }
  try {
    await Promise.all(observers.map((o, i) => cycle(o, random.fork(`observer-${i}`))))
  } finally {
    stopping = true
  }
  await drivers

  const heads = new Map(threads.map((t) => [t.id, t.owner.last]))
  let headMismatch = 0
  for (const thread of threads) {
    const response = await server.fetchAs("owner", `/api/threads/${thread.id}/events?after_seq=${thread.owner.last}`)
    const body = await response.json() as { head_seq: number }
    if (body.head_seq !== thread.owner.last) headMismatch++
  }
  await waitUntil(
    budget,
    20_000,
    () => observers.every((o) => o.threads.every((t) => o.tracks.get(t.id)!.last >= heads.get(t.id)!))
  )
  // Every stream starts at seq 1 (the first join asks after_seq 0) and every run has ended by now.
  const stored = new RunCheck()
  for (const thread of threads) {
    stored.check(`stored ${thread.id}`, await storedLog((path) => server.fetchAs("owner", path), thread.id), {
      ended: true
    })
  }
  const streams = new RunCheck()
  for (const thread of threads) streams.check(`owner in ${thread.id}`, thread.owner.events, { ended: true })
  for (const o of observers) {
    for (const t of o.threads) streams.check(`${o.user} in ${t.id}`, o.tracks.get(t.id)!.events, { ended: true })
  }
  return report(config, server, threads, observers, heads, {
    stored,
    streams,
    headMismatch,
    ownerForeign,
    ownerUnreadable: owner.unreadable
  })
}

const range = (n: number) => Array.from({ length: n }, (_, i) => i)

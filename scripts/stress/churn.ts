/**
 * Connect/disconnect churn. Thousands of short connections: each opens,
 * often joins a thread, pings, and goes away (a close handshake or an
 * abrupt drop). Afterwards the hub must hold no connection, thread or
 * subscription, the server's runtime no more fibers than before, and the
 * heap (after full collections) must not have grown past a bound nor
 * trend upward across checkpoints.
 */
import type { StressClient } from "./client.ts"
import { type Budget, type Invariant, invariant, pool, settledHeap, waitUntil } from "./common.ts"
import { Random } from "./random.ts"
import { startServer } from "./server.ts"

export interface ChurnConfig {
  readonly seed: number
  readonly cycles: number
  /** Connections in flight at once. */
  readonly width: number
  /** Largest heap growth allowed between the warmed-up baseline and the end. */
  readonly heapBoundBytes: number
}

const USERS = 40
const THREADS = 8
const CHECKPOINTS = 5
const MB = 1024 * 1024

/** Least-squares slope of `ys` over 0..n-1. */
const slope = (ys: ReadonlyArray<number>) => {
  const n = ys.length
  const mx = (n - 1) / 2
  const my = ys.reduce((a, b) => a + b, 0) / n
  let num = 0
  let den = 0
  ys.forEach((y, x) => {
    num += (x - mx) * (y - my)
    den += (x - mx) ** 2
  })
  return den === 0 ? 0 : num / den
}

export const churnScenario = async (config: ChurnConfig, budget: Budget): Promise<Array<Invariant>> => {
  const random = new Random(config.seed, "churn")
  const server = await startServer()
  const counts = { cycles: 0, joins: 0, abrupt_drops: 0, failed_cycles: 0 }
  let firstFailure: string | undefined
  try {
    const owner = await server.connect("churn-owner")
    const members = Array.from({ length: USERS }, (_, i) => `churn-${i}`)
    const threads: Array<string> = []
    for (let t = 0; t < THREADS; t++) {
      threads.push((await owner.request({ type: "create_thread", members })).thread_id as string)
    }
    owner.close()

    const cycle = async (index: number) => {
      budget.check("churning")
      const rng = random.fork(`cycle-${index}`)
      let client: StressClient | undefined
      try {
        client = await server.connect(rng.pick(members))
        if (rng.chance(0.3)) {
          await client.request({ type: "join_thread", thread_id: rng.pick(threads), after_seq: 0 })
          counts.joins++
        }
        await client.request({ type: "ping" })
      } catch (error) {
        counts.failed_cycles++
        firstFailure ??= String(error)
      } finally {
        if (client !== undefined && rng.chance(0.5)) {
          counts.abrupt_drops++
          client.terminate()
        } else {
          client?.close()
        }
        counts.cycles++
      }
    }

    const settled = async () => {
      await waitUntil(budget, 30_000, async () => (await server.stats()).connections === 0)
      return { stats: await server.stats(), fibers: await server.liveFibers(), heap: await settledHeap() }
    }

    // A warm-up round first, so caches, JIT and pools are at their working size before the baseline.
    const warmup = Math.max(50, Math.round(config.cycles / 10))
    await pool(warmup, config.width, (i) => cycle(-1 - i))
    const baseline = await settled()
    const heaps = [baseline.heap]
    const per = Math.ceil(config.cycles / CHECKPOINTS)
    let peakConnections = 0
    let peakFibers = 0
    for (let c = 0; c < CHECKPOINTS; c++) {
      const sampler = setInterval(async () => {
        peakConnections = Math.max(peakConnections, (await server.stats()).connections)
        peakFibers = Math.max(peakFibers, await server.liveFibers())
      }, 50)
      await pool(per, config.width, (i) => cycle(c * per + i))
      clearInterval(sampler)
      heaps.push((await settled()).heap)
    }
    const end = await settled()
    counts.cycles -= warmup
    const growth = end.heap - baseline.heap
    const trend = slope(heaps)
    const resources = {
      cycles: counts.cycles,
      joins: counts.joins,
      abrupt_drops: counts.abrupt_drops,
      failed_cycles: counts.failed_cycles,
      peak_connections: peakConnections,
      connections: end.stats.connections,
      threads: end.stats.threads,
      subscriptions: end.stats.subscriptions,
      users: end.stats.users,
      fibers_before: baseline.fibers,
      fibers_peak: peakFibers,
      fibers_after: end.fibers,
      server_errors_logged: server.logs.errors
    }
    const heap = {
      heap_before_kb: Math.round(baseline.heap / 1024),
      heap_after_kb: Math.round(end.heap / 1024),
      growth_kb: Math.round(growth / 1024),
      bound_kb: Math.round(config.heapBoundBytes / 1024),
      slope_kb_per_checkpoint: Math.round(trend / 1024),
      checkpoint_min_kb: Math.round(Math.min(...heaps) / 1024),
      checkpoint_max_kb: Math.round(Math.max(...heaps) / 1024),
      checkpoints: heaps.length
    }
    return [
      invariant(
        "churn: no registered emitter, subscription or fiber left behind",
        counts.cycles >= config.cycles && counts.failed_cycles === 0 && peakConnections > 0 &&
          end.stats.connections + end.stats.threads + end.stats.subscriptions + end.stats.users === 0 &&
          end.fibers <= baseline.fibers && server.logs.errors === 0,
        resources,
        firstFailure ?? server.logs.first.join("; ")
      ),
      invariant(
        `churn: flat heap (growth under ${config.heapBoundBytes / MB} MB, no upward trend across checkpoints)`,
        growth < config.heapBoundBytes && trend < config.heapBoundBytes / CHECKPOINTS,
        heap,
        `heap grew ${(growth / MB).toFixed(1)} MB, ${(trend / MB).toFixed(2)} MB per checkpoint; checkpoints (MB): ${
          heaps.map((h) => (h / MB).toFixed(1)).join(" ")
        }`
      )
    ]
  } finally {
    await server.close()
  }
}

/**
 * The workloads, as run by the load generator against either server, or
 * (`nodes`) against agent-chat as one node or two.
 * Each returns flat metrics (null when a figure could not be measured or
 * the load generator saturated its core), notes, and details for the JSON.
 */
import type { AgentSpec } from "./agentload.ts"
import {
  cpuMicros,
  type CpuTimes,
  type EventSize,
  type GcTotals,
  median,
  now,
  type PublishRequest,
  type PublishResult,
  quantile,
  sleep,
  type StatsResult
} from "./common.ts"
import { type Client, numberAfter, type Pool } from "./pool.ts"

/** The load generator's own CPU over a window, as a fraction of its core; at or above this it is the bottleneck. */
export const SATURATED = 0.9

export interface FanoutSpec {
  readonly workload: "fanout"
  readonly counts: ReadonlyArray<number>
  readonly sizes: ReadonlyArray<EventSize>
  readonly deliveries: Readonly<Record<EventSize, number>>
  readonly maxEvents: number
  /** Store the events through the log (see PublishRequest.store). */
  readonly store?: boolean
}

/** Open loop at a fixed rate, spread over `threads`, each connection joined to one of them. */
export interface FixedLatencySpec {
  readonly connections: number
  readonly threads: number
  readonly fixedRate: number
  readonly fixedMs: number
  readonly warmupMs: number
  readonly store?: boolean
}

export type LoadSpec =
  | { readonly workload: "memory"; readonly low: number; readonly high: number; readonly holdMs: number }
  | FanoutSpec
  | FixedLatencySpec & {
    readonly workload: "latency"
    /** A steady stream after the fixed-rate run: its major GCs and scavenges per event are counted. */
    readonly steadyRate: number
    readonly steadyMs: number
    readonly ladder: ReadonlyArray<number>
    readonly stepMs: number
    readonly bisect: number
    readonly p99LimitMs: number
  }
  | {
    readonly workload: "connect"
    readonly setupCount: number
    readonly setupConcurrency: number
    readonly stormConnections: number
    readonly stormThreads: number
    readonly stormMissed: number
    readonly stormConcurrency: number
  }
  | { readonly workload: "replay"; readonly events: number; readonly joins: number }
  | {
    readonly workload: "nodes"
    /** Stored events, so that they reach the other node through the broker. */
    readonly fanout: Omit<FanoutSpec, "workload" | "store">
    readonly latency: Omit<FixedLatencySpec, "store">
  }
  | AgentSpec

export type { AgentSpec }

export type Metrics = Record<string, number | null>

export interface LoadResult {
  readonly metrics: Metrics
  readonly notes: Array<string>
  readonly details: Record<string, unknown>
}

export interface Control {
  readonly threads: (count: number) => Promise<ReadonlyArray<string>>
  readonly publish: (request: PublishRequest) => Promise<PublishResult>
  readonly stats: () => Promise<StatsResult>
  /** The server's CPU times, without the garbage collection `stats` forces. */
  readonly cpu: () => Promise<CpuTimes>
  readonly gcTotals: () => Promise<GcTotals>
}

export interface Env {
  readonly pool: Pool
  /** The server that publishes. */
  readonly control: Control
  /** The server the pool's connections are on, when it is another node than the publisher. */
  readonly receiver?: Control
  readonly result: LoadResult
}

/** Measures the load generator's CPU over a window. */
const loadMeter = () => {
  const cpu = process.cpuUsage()
  const t0 = now()
  return () => cpuMicros(process.cpuUsage(cpu)) / ((now() - t0) * 1000)
}

/**
 * Starts measuring the CPU of the receiving node, when it is another process than the publisher (whose CPU
 * `publish` reports): its microseconds since, or 0.
 */
const receiverMeter = async (receiver: Control | undefined): Promise<() => Promise<number>> => {
  if (receiver === undefined) return () => Promise.resolve(0)
  const before = cpuMicros(await receiver.cpu())
  return async () => cpuMicros(await receiver.cpu()) - before
}

/**
 * Starts counting the servers' garbage collections (both nodes' when there are two); the returned function
 * puts the count and the pause total since into the metrics.
 */
export const gcMeter = async ({ control, receiver, result }: Env): Promise<() => Promise<void>> => {
  const servers = receiver === undefined ? [control] : [control, receiver]
  const read = () =>
    Promise.all(servers.map((s) => s.gcTotals())).then((all) =>
      all.reduce((a, b) => ({
        count: a.count + b.count,
        pause_ms: a.pause_ms + b.pause_ms,
        major: a.major + b.major,
        minor: a.minor + b.minor
      }))
    )
  const before = await read()
  return async () => {
    const after = await read()
    result.metrics.gc_count = after.count - before.count
    result.metrics.gc_pause_ms = after.pause_ms - before.pause_ms
  }
}

const OPEN_CONCURRENCY = 200
/** Readings of the memory workload after the first, evenly spaced between `low` and `high` connections. */
const MEMORY_STEPS = 5
const KB = 1024

/** Least-squares slope of y over x. */
const slope = (xs: ReadonlyArray<number>, ys: ReadonlyArray<number>): number | null => {
  const n = xs.length
  const mx = xs.reduce((a, b) => a + b, 0) / n
  const my = ys.reduce((a, b) => a + b, 0) / n
  let sxy = 0
  let sxx = 0
  for (let i = 0; i < n; i++) {
    sxy += (xs[i]! - mx) * (ys[i]! - my)
    sxx += (xs[i]! - mx) ** 2
  }
  return n > 1 && sxx > 0 ? sxy / sxx : null
}

/**
 * Memory per idle connection: the slope of RSS and heap (after forced GC) over the connections held, fitted
 * through several points between `low` and `high`, since one pair of RSS readings moves with heap pages the
 * allocator happens to keep.
 */
export const memory = async ({ control, pool, result }: Env, spec: Extract<LoadSpec, { workload: "memory" }>) => {
  const meter = loadMeter()
  const first = await pool.open(spec.low, OPEN_CONCURRENCY)
  await sleep(500)
  const points = [await control.stats()]
  let failed = first.failed
  let opened = first.clients.length
  let openMs = first.elapsedMs
  for (let step = 1; step <= MEMORY_STEPS; step++) {
    const batch = await pool.open(Math.round((spec.high - spec.low) / MEMORY_STEPS), OPEN_CONCURRENCY)
    failed += batch.failed
    opened += batch.clients.length
    openMs += batch.elapsedMs
    await sleep(300)
    points.push(await control.stats())
  }
  const loadCpu = meter()
  // Idle connections should cost no CPU: whatever the server burns while nothing happens is overhead.
  const idleFrom = await control.cpu()
  const idleStart = now()
  await sleep(spec.holdMs)
  const idleCpu = (cpuMicros(await control.cpu()) - cpuMicros(idleFrom)) / ((now() - idleStart) * 1000)
  const held = pool.clients.filter((c) => c.connection !== undefined && !c.connection.closed).length
  const xs = points.map((p) => p.hub.connections)
  const per = (of: (m: NodeJS.MemoryUsage) => number) => {
    const s = slope(xs, points.map((p) => of(p.memory)))
    return s === null ? null : s / KB
  }
  Object.assign(result.metrics, {
    rss_kb: per((m) => m.rss),
    heap_kb: per((m) => m.heapUsed),
    external_kb: per((m) => m.external),
    held,
    idle_cpu: idleCpu,
    errors: failed + pool.unexpectedCloses + pool.errorFrames,
    open_rate: opened / (openMs / 1000),
    load_cpu: loadCpu
  })
  result.details.memory = { points: points.map((p) => ({ connections: p.hub.connections, ...p.memory })) }
}

export const fanout = async (env: Env, spec: FanoutSpec) => {
  const { control, pool, result } = env
  const opened = await pool.open(Math.max(...spec.counts), OPEN_CONCURRENCY)
  if (opened.failed > 0) result.notes.push(`fanout: ${opened.failed} connections failed to open`)
  const cases: Array<Record<string, unknown>> = []
  for (const size of spec.sizes) {
    for (const n of spec.counts) {
      const key = `${size}_${n}`
      const [threadId] = await control.threads(1)
      const members = opened.clients.slice(0, n)
      await Promise.all(members.map((c) => pool.join(c, threadId!)))
      const events = Math.max(1, Math.min(spec.maxEvents, Math.ceil(spec.deliveries[size] / members.length)))
      const expected = events * members.length
      const target = pool.totalEvents + expected
      const receiverCpu = await receiverMeter(env.receiver)
      const meter = loadMeter()
      const t0 = now()
      const published = control.publish({
        thread_ids: [threadId!],
        count: events,
        size,
        mode: "burst",
        ...(spec.store === true ? { store: true } : {})
      })
      let complete = true
      await pool.waitFor(() => pool.totalEvents >= target, 120_000, `fan-out ${key}`).catch((error) => {
        complete = false
        result.notes.push(`fanout ${key}: ${String(error)}; ${pool.totalEvents - (target - expected)}/${expected}`)
      })
      const elapsed = now() - t0
      const loadCpu = meter()
      const publish = await published
      const receiverUs = await receiverCpu()
      const stats = await control.stats()
      if (publish.failed > 0) result.notes.push(`fanout ${key}: ${publish.failed} batches refused`)
      const saturated = loadCpu >= SATURATED
      if (saturated) result.notes.push(`fanout ${key}: load generator saturated (${loadCpu.toFixed(2)} of a core)`)
      const valid = complete && !saturated
      result.metrics[`fanout_${key}_dps`] = valid ? expected / (elapsed / 1000) : null
      result.metrics[`fanout_${key}_cpu_us`] = valid
        ? (cpuMicros(stats.cpu) - cpuMicros(publish.cpu_before) + receiverUs) / expected
        : null
      result.metrics[`fanout_${key}_load_cpu`] = loadCpu
      cases.push({ size, connections: n, events, expected, elapsed_ms: elapsed, load_cpu: loadCpu, complete })
      await sleep(200)
    }
  }
  result.details.fanout = cases
}

const T_KEY = Buffer.from("\"t\":")

interface Step {
  readonly rate: number
  readonly p50: number
  readonly p99: number
  readonly p999: number
  readonly max: number
  readonly lost: number
  readonly loadCpu: number
  readonly serverCpu: number
  readonly maxLagMs: number
}

/** One open-loop run at `rate` events/s spread over the threads, every connection live in one of them. */
const latencyStep = async (
  { control, pool, receiver }: Env,
  threadIds: ReadonlyArray<string>,
  rate: number,
  durationMs: number,
  warmupMs: number,
  store = false
): Promise<Step> => {
  const count = Math.max(1, Math.round(rate * durationMs / 1000))
  const due = new Float64Array(count)
  const took = new Float64Array(count)
  let n = 0
  pool.onEvent = (buf, start, end) => {
    if (n < count) {
      const t = numberAfter(buf, T_KEY, start, end)
      due[n] = t
      took[n++] = now() - t
    }
  }
  const target = pool.totalEvents + count
  const receiverCpu = await receiverMeter(receiver)
  const meter = loadMeter()
  const t0 = now()
  const publish = await control.publish({
    thread_ids: threadIds,
    count,
    size: "delta",
    mode: "rate",
    rate,
    ...(store ? { store } : {})
  })
  await pool.waitFor(() => pool.totalEvents >= target, 2_000, "latency").catch(() => {})
  const loadCpu = meter()
  const wall = now() - t0
  const receiverUs = await receiverCpu()
  const stats = await control.stats()
  pool.onEvent = undefined
  const kept: Array<number> = []
  for (let i = 0; i < n; i++) if (due[i]! >= publish.started_at + warmupMs) kept.push(took[i]!)
  const sorted = Float64Array.from(kept).sort()
  return {
    rate,
    p50: quantile(sorted, 0.5),
    p99: quantile(sorted, 0.99),
    p999: quantile(sorted, 0.999),
    max: sorted.length === 0 ? Number.NaN : sorted[sorted.length - 1]!,
    lost: count - n,
    loadCpu,
    serverCpu: (cpuMicros(stats.cpu) - cpuMicros(publish.cpu_before) + receiverUs) / (wall * 1000),
    maxLagMs: publish.max_lag_ms
  }
}

/** The fixed-rate run, on connections and threads of its own: its figures, and the threads for more steps. */
const fixedLatency = async (env: Env, spec: FixedLatencySpec) => {
  const { control, pool, result } = env
  const opened = await pool.open(spec.connections, OPEN_CONCURRENCY)
  const threadIds = await control.threads(spec.threads)
  await Promise.all(opened.clients.map((c, i) => pool.join(c, threadIds[i % threadIds.length]!)))
  const fixed = await latencyStep(env, threadIds, spec.fixedRate, spec.fixedMs, spec.warmupMs, spec.store)
  await sleep(300)
  const fixedSaturated = fixed.loadCpu >= SATURATED
  if (fixedSaturated) result.notes.push(`latency: load generator saturated at ${spec.fixedRate}/s`)
  if (fixed.lost > 0) result.notes.push(`latency: ${fixed.lost} events not received at ${spec.fixedRate}/s`)
  Object.assign(result.metrics, {
    p50_ms: fixedSaturated ? null : fixed.p50,
    p99_ms: fixedSaturated ? null : fixed.p99,
    p999_ms: fixedSaturated ? null : fixed.p999,
    max_ms: fixedSaturated ? null : fixed.max,
    lost: fixed.lost,
    server_cpu: fixed.serverCpu,
    load_cpu: fixed.loadCpu
  })
  result.details.fixed_latency = fixed
  return { threadIds, fixed }
}

export const latency = async (env: Env, spec: Extract<LoadSpec, { workload: "latency" }>) => {
  const { result } = env
  const { fixed, threadIds } = await fixedLatency(env, spec)
  if (spec.steadyMs > 0) {
    const before = await env.control.gcTotals()
    const steady = await latencyStep(env, threadIds, spec.steadyRate, spec.steadyMs, spec.warmupMs)
    const after = await env.control.gcTotals()
    const events = Math.max(1, Math.round(spec.steadyRate * spec.steadyMs / 1000))
    Object.assign(result.metrics, {
      steady_p99_ms: steady.loadCpu >= SATURATED ? null : steady.p99,
      steady_major_gc: after.major - before.major,
      steady_scavenges_per_kevent: (after.minor - before.minor) / (events / 1000)
    })
    result.details.steady = { ...steady, major_gc: after.major - before.major, scavenges: after.minor - before.minor }
    await sleep(300)
  }
  const steps: Array<Step> = [fixed]
  const run = async (rate: number, ms: number) => {
    const step = await latencyStep(env, threadIds, rate, ms, spec.warmupMs)
    steps.push(step)
    await sleep(300)
    return step
  }
  // The highest rate whose p99 stays under the limit: climb the ladder, then bisect between pass and fail.
  const passes = (s: Step) => s.lost === 0 && s.p99 <= spec.p99LimitMs
  // A short step can fail on one stall of a shared machine: a failing rate gets a second try.
  const attempt = async (rate: number) => {
    const first = await run(rate, spec.stepMs)
    if (passes(first) || first.loadCpu >= SATURATED) return first
    const second = await run(rate, spec.stepMs)
    return passes(second) ? second : first
  }
  let best: number | null = null
  let failed: number | null = null
  let limitedBy: "server" | "load" | "none" = "none"
  for (const rate of spec.ladder) {
    const step = await attempt(rate)
    if (step.loadCpu >= SATURATED) {
      limitedBy = "load"
      break
    }
    if (!passes(step)) {
      failed = rate
      limitedBy = "server"
      break
    }
    best = rate
  }
  for (let i = 0; i < spec.bisect && best !== null && failed !== null && limitedBy === "server"; i++) {
    const rate = Math.round(Math.sqrt(best * failed) / 100) * 100
    if (rate <= best || rate >= failed) break
    const step = await attempt(rate)
    if (step.loadCpu >= SATURATED) break
    if (passes(step)) best = rate
    else failed = rate
  }
  if (limitedBy === "load") result.notes.push(`latency: load generator saturated; max rate is a lower bound`)
  if (limitedBy === "none") result.notes.push(`latency: every rate of the ladder passed; max rate is a lower bound`)
  result.metrics.max_rate = best
  result.details.latency = { steps, limited_by: limitedBy }
}

export const connect = async ({ control, pool, result }: Env, spec: Extract<LoadSpec, { workload: "connect" }>) => {
  const setup = await pool.open(spec.setupCount, spec.setupConcurrency)
  const sortedSetup = Float64Array.from(setup.setupMs).sort()
  result.metrics.setup_rate = setup.clients.length / (setup.elapsedMs / 1000)
  result.metrics.setup_p99_ms = quantile(sortedSetup, 0.99)
  await pool.closeAll()
  await waitConnections(control, 0)

  // The storm: every connection drops at once while events are stored, then all reconnect and replay.
  pool.trackSeq = true
  const opened = await pool.open(spec.stormConnections, OPEN_CONCURRENCY)
  const threadIds = await control.threads(spec.stormThreads)
  await Promise.all(opened.clients.map((c, i) => pool.join(c, threadIds[i % threadIds.length]!)))
  const before = opened.clients.map((c) => ({ threadId: c.threadId!, lastSeq: c.lastSeq }))
  await pool.closeAll()
  await waitConnections(control, 0)
  await control.publish({
    thread_ids: threadIds,
    count: spec.stormThreads * spec.stormMissed,
    size: "delta",
    mode: "burst",
    store: true
  })
  const failuresBefore = pool.failures
  const meter = loadMeter()
  const t0 = now()
  let lastWelcome = t0
  let next = 0
  const reconnectOne = async (): Promise<void> => {
    while (next < before.length) {
      const { lastSeq, threadId } = before[next++]!
      try {
        const client = await pool.connect(undefined, 60_000)
        lastWelcome = Math.max(lastWelcome, now())
        client.wantSeq = lastSeq + spec.stormMissed
        pool.clients.push(client)
        await pool.join(client, threadId, lastSeq, 60_000)
      } catch (error) {
        pool.noteError(error)
      }
    }
  }
  const workers = Array.from({ length: Math.min(spec.stormConcurrency, before.length) }, reconnectOne)
  const caughtUp = pool.waitFor(() => pool.caughtUp >= before.length, 90_000, "storm catch-up").catch((error) => {
    result.notes.push(`storm: ${String(error)}; ${pool.caughtUp}/${before.length} caught up`)
  })
  await Promise.all(workers)
  await caughtUp
  const done = now()
  Object.assign(result.metrics, {
    storm_reconnect_s: (lastWelcome - t0) / 1000,
    storm_catchup_s: pool.caughtUp >= before.length ? (done - t0) / 1000 : null,
    storm_errors: pool.failures - failuresBefore + pool.errorFrames + pool.unexpectedCloses,
    storm_gaps: pool.clients.reduce((sum, c: Client) => sum + c.gaps, 0),
    storm_load_cpu: meter()
  })
  result.details.storm = { connections: before.length, caught_up: pool.caughtUp, errors: pool.errors }
}

const waitConnections = async (control: Control, count: number) => {
  for (let i = 0; i < 150; i++) {
    if ((await control.stats()).hub.connections <= count) return
    await sleep(100)
  }
  throw new Error(`the server still holds more than ${count} connections after 15 s`)
}

export const replay = async ({ control, pool, result }: Env, spec: Extract<LoadSpec, { workload: "replay" }>) => {
  const [threadId] = await control.threads(1)
  await control.publish({ thread_ids: [threadId!], count: spec.events, size: "delta", mode: "burst", store: true })
  pool.trackSeq = true
  const times: Array<number> = []
  for (let j = 0; j < spec.joins; j++) {
    const [client] = (await pool.open(1, 1)).clients
    if (client === undefined) throw new Error("replay: cannot connect")
    client.wantSeq = spec.events
    const t0 = now()
    const caughtUp = pool.caughtUp
    await pool.join(client, threadId!, 0)
    await pool.waitFor(() => pool.caughtUp > caughtUp, 60_000, "replay")
    times.push(now() - t0)
    if (client.gaps > 0) result.notes.push(`replay: ${client.gaps} gaps or duplicates`)
    await pool.closeAll()
  }
  result.metrics.replay_ms = median(times)
  result.metrics.replay_first_ms = times[0] ?? null
  result.details.replay = { times_ms: times }
}

/**
 * agent-chat as one node or two: fan-out of stored events to subscribers on the node the clients are on, and
 * the latency of stored events at a fixed rate. With two nodes the publisher is on the first and every client
 * on the second, so each event crosses the broker.
 */
export const nodes = async (env: Env, spec: Extract<LoadSpec, { workload: "nodes" }>) => {
  await fanout(env, { ...spec.fanout, workload: "fanout", store: true })
  // Latency on connections of its own, as in the latency workload: the fan-out's are gone first.
  await env.pool.closeAll()
  await waitConnections(env.receiver ?? env.control, 0)
  await fixedLatency(env, { ...spec.latency, store: true })
}

/**
 * The load side of the `agent` workload: the agent's own work. At each
 * level, N threads, each watched by a few connections of its member; one
 * of them sends a message the fake model of streamModel.ts answers with
 * paced deltas and a tool call; every watcher reads the time stamped in
 * each chunk from the frames that carry it. Measured in the window where
 * every run streams: model chunk to client frame (p50, p99, max over every
 * chunk at every watcher), the chunks and the delta events delivered per
 * second (each stored before it is delivered: the events stored per
 * second), and whether every run ended with agent_completed. The levels
 * rise until the p99 passes the limit or a run fails, after a first
 * round at the lowest level that is not counted (the JIT's warm-up).
 *
 * Then, with `plain`, the physical limit of the design on the same
 * PostgreSQL: a plain `pg` script inserting rows like the deltas' into a
 * copy of the events table, in batches, from a few connections at once.
 */
import { randomUUID } from "node:crypto"
import pg from "pg"
import { now, sleep } from "./common.ts"
import type { Client } from "./pool.ts"
import type { Env } from "./workloads.ts"

export interface PlainSpec {
  readonly url: string
  readonly ms: number
  readonly batch: number
  readonly concurrency: number
}

export interface AgentSpec {
  readonly workload: "agent"
  /** Concurrent runs to try, rising. */
  readonly levels: ReadonlyArray<number>
  /** Connections watching each thread. */
  readonly watchers: number
  /** Deltas per run, and per second. */
  readonly deltas: number
  readonly rate: number
  /** After every run has started, how long before measuring, and how long before the runs end to stop. */
  readonly warmupMs: number
  readonly p99LimitMs: number
  /** Set by the orchestrator on PostgreSQL. */
  readonly plain?: PlainSpec
}

const AT = 0x40
const SEMI = 0x3b
const DOT = 0x2e
const DELTA_TYPE = Buffer.from("\"event_type\":\"agent_response_delta\"")
const COMPLETED = Buffer.from("\"event_type\":\"agent_completed\"")
const FAILED = Buffer.from("\"event_type\":\"agent_error\"")
const TYPE_WINDOW = 64
const BIN_MS = 0.1
const BINS = 200_000

/** Latencies in 0.1 ms bins up to 20 s (and one bin beyond): quantiles without keeping every sample. */
class Histogram {
  readonly bins = new Uint32Array(BINS + 1)
  count = 0
  max = 0
  add(ms: number) {
    const bin = Math.min(BINS, Math.max(0, Math.floor(ms / BIN_MS)))
    this.bins[bin]!++
    this.count++
    if (ms > this.max) this.max = ms
  }
  quantile(q: number): number | null {
    if (this.count === 0) return null
    const rank = Math.ceil(q * this.count)
    let seen = 0
    for (let i = 0; i <= BINS; i++) {
      seen += this.bins[i]!
      if (seen >= rank) return (i + 1) * BIN_MS
    }
    return this.max
  }
}

/** The number of `@<digits>.<digits>;` at `at` in buf, without allocating; NaN when malformed. */
const stampAt = (buf: Buffer, at: number, end: number): [value: number, next: number] => {
  let i = at + 1
  let value = 0
  let scale = 0
  for (; i < end; i++) {
    const c = buf[i]!
    if (c === SEMI) break
    if (c === DOT) scale = 1
    else if (c >= 0x30 && c <= 0x39) {
      if (scale === 0) value = value * 10 + (c - 0x30)
      else value += (c - 0x30) / 10 ** scale++
    } else return [Number.NaN, i]
  }
  return [value, i + 1]
}

const has = (buf: Buffer, key: Buffer, start: number, end: number) => {
  const at = buf.indexOf(key, start)
  return at >= 0 && at < Math.min(end, start + TYPE_WINDOW)
}

interface Watch {
  readonly thread: number
  readonly first: boolean
}

export interface LevelResult {
  readonly runs: number
  readonly started: number
  readonly completed: number
  readonly failed: number
  readonly p50_ms: number | null
  readonly p99_ms: number | null
  readonly max_ms: number | null
  /** Chunks per second, counted at one watcher of each thread. */
  readonly chunks_s: number
  /** Delta events per second (stored, then delivered), counted at one watcher of each thread. */
  readonly events_s: number
  readonly chunks_per_event: number | null
  readonly window_s: number
  readonly errors: ReadonlyArray<string>
}

const level = async (env: Env, spec: AgentSpec, runs: number): Promise<LevelResult> => {
  const pool = env.pool
  const watches = new Map<Client, Watch>()
  const histogram = new Histogram()
  let measuring = false
  let chunks = 0
  let events = 0
  const ended = new Uint8Array(runs)
  let completed = 0
  let failed = 0
  pool.onClientEvent = (client: Client, buf: Buffer, start: number, end: number) => {
    const watch = watches.get(client)
    if (watch === undefined) return
    if (has(buf, DELTA_TYPE, start, end)) {
      if (!measuring) return
      const t = now()
      if (watch.first) events++
      let at = buf.indexOf(AT, start)
      while (at >= 0 && at < end) {
        const [stamp, next] = stampAt(buf, at, end)
        if (!Number.isNaN(stamp)) {
          histogram.add(t - stamp)
          if (watch.first) chunks++
        }
        at = buf.indexOf(AT, next)
      }
    } else if (watch.first && ended[watch.thread] === 0) {
      if (has(buf, COMPLETED, start, end)) {
        ended[watch.thread] = 1
        completed++
      } else if (has(buf, FAILED, start, end)) {
        ended[watch.thread] = 2
        failed++
      }
    }
  }
  const errors: Array<string> = []
  try {
    const opened = await pool.open(runs * spec.watchers, 200)
    if (opened.failed > 0) errors.push(`${opened.failed} connections failed: ${pool.errors.join("; ")}`)
    const clients = opened.clients
    const threads: Array<string> = []
    for (let i = 0; i < runs; i++) {
      const owner = clients[i * spec.watchers]
      if (owner === undefined) break
      const ack = await pool.request(owner, { type: "create_thread", title: `agent ${i}` })
      threads.push(String(ack.thread_id))
    }
    await Promise.all(threads.map(async (threadId, i) => {
      for (let w = 0; w < spec.watchers; w++) {
        const client = clients[i * spec.watchers + w]
        if (client === undefined) continue
        watches.set(client, { thread: i, first: w === 0 })
        await pool.join(client, threadId)
      }
    }))
    const content = `bench-stream deltas=${spec.deltas} rate=${spec.rate} tool=${Math.floor(spec.deltas / 2)}`
    const sendStarted = now()
    const acks = await Promise.allSettled(
      threads.map((threadId, i) =>
        pool.request(clients[i * spec.watchers]!, { type: "send_message", thread_id: threadId, content }, 60_000)
      )
    )
    const started = acks.filter((a) => a.status === "fulfilled").length
    for (const a of acks) if (a.status === "rejected" && errors.length < 5) errors.push(String(a.reason))
    // Every run streams from its ack to about deltas / rate later (plus the tool call between its two steps).
    const allStarted = now()
    const streamMs = (spec.deltas / spec.rate) * 1000
    const from = allStarted + spec.warmupMs
    const to = sendStarted + streamMs - spec.warmupMs
    await sleep(Math.max(0, from - now()))
    measuring = true
    const chunks0 = chunks
    const events0 = events
    const t0 = now()
    await sleep(Math.max(1000, to - now()))
    measuring = false
    const windowS = (now() - t0) / 1000
    const measuredChunks = chunks - chunks0
    const measuredEvents = events - events0
    // Every run ends: its terminal event, at the watcher that counts.
    const deadline = now() + streamMs + 60_000
    while (completed + failed < started && now() < deadline) await sleep(100)
    return {
      runs,
      started,
      completed,
      failed,
      p50_ms: histogram.quantile(0.5),
      p99_ms: histogram.quantile(0.99),
      max_ms: histogram.count === 0 ? null : histogram.max,
      chunks_s: measuredChunks / windowS,
      events_s: measuredEvents / windowS,
      chunks_per_event: measuredEvents === 0 ? null : measuredChunks / measuredEvents,
      window_s: windowS,
      errors: [...errors, ...pool.errors.slice(0, 3)]
    }
  } finally {
    pool.onClientEvent = undefined
    await pool.closeAll()
  }
}

/** Rows like the workload's delta events, inserted in batches by `concurrency` connections for `ms`. */
const plainInsert = async (plain: PlainSpec) => {
  const admin = new pg.Client({ connectionString: plain.url })
  await admin.connect()
  const table = `plain_events_${randomUUID().slice(0, 8)}`
  await admin.query(`CREATE TABLE ${table} (LIKE events INCLUDING DEFAULTS INCLUDING INDEXES)`)
  const clients = await Promise.all(Array.from({ length: plain.concurrency }, async () => {
    const client = new pg.Client({ connectionString: plain.url })
    await client.connect()
    return client
  }))
  let rows = 0
  const start = now()
  const until = start + plain.ms
  try {
    await Promise.all(clients.map(async (client) => {
      const threadId = randomUUID()
      let seq = 0
      while (now() < until) {
        const values: Array<unknown> = []
        const placeholders: Array<string> = []
        const timestamp = new Date()
        for (let i = 0; i < plain.batch; i++) {
          const p = values.length
          placeholders.push(`($${p + 1}, $${p + 2}, $${p + 3}, $${p + 4}, $${p + 5}, $${p + 6}, $${p + 7})`)
          values.push(
            threadId,
            ++seq,
            randomUUID(),
            "agent_response_delta",
            null,
            timestamp,
            JSON.stringify({ delta: `@${now().toFixed(3)};` })
          )
        }
        await client.query(
          `INSERT INTO ${table} (thread_id, seq, id, event_type, run_id, created_at, data) VALUES ${
            placeholders.join(", ")
          }`,
          values
        )
        rows += plain.batch
      }
    }))
    return { rows_s: rows / ((now() - start) / 1000), batch: plain.batch, concurrency: plain.concurrency }
  } finally {
    await Promise.all(clients.map((client) => client.end()))
    await admin.query(`DROP TABLE ${table}`).catch(() => undefined)
    await admin.end()
  }
}

export const agent = async (env: Env, spec: AgentSpec) => {
  const levels: Array<LevelResult> = []
  let held = 0
  // A first round, not counted: the server's first runs pay for its JIT compiling the whole run path.
  const warmup = await level(env, { ...spec, deltas: Math.min(spec.deltas, 150) }, spec.levels[0] ?? 10)
  env.result.details.warmup = warmup
  await sleep(1000)
  for (const runs of spec.levels) {
    const result = await level(env, spec, runs)
    levels.push(result)
    process.stderr.write(
      `    agent ${runs} runs: p99 ${result.p99_ms?.toFixed(1)} ms, ${result.events_s.toFixed(0)} events/s, ${
        result.chunks_s.toFixed(0)
      } chunks/s, completed ${result.completed}/${result.started}\n`
    )
    const ok = result.started === runs && result.completed === runs && result.p99_ms !== null &&
      result.p99_ms <= spec.p99LimitMs
    if (!ok) break
    held = runs
    await sleep(1000)
  }
  const best = levels.find((l) => l.runs === held)
  env.result.metrics.runs_held = held
  env.result.metrics.held_events_s = best?.events_s ?? null
  env.result.metrics.held_chunks_s = best?.chunks_s ?? null
  env.result.metrics.held_p99_ms = best?.p99_ms ?? null
  env.result.metrics.top_events_s = Math.max(0, ...levels.map((l) => l.events_s))
  env.result.metrics.top_chunks_s = Math.max(0, ...levels.map((l) => l.chunks_s))
  env.result.details.levels = levels
  if (spec.plain !== undefined) {
    const plain = await plainInsert(spec.plain)
    env.result.metrics.plain_rows_s = plain.rows_s
    env.result.details.plain = plain
  }
}

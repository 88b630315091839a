/**
 * What the benchmark processes share: the workload specs the orchestrator
 * hands to the load generator, the control API of both servers, the
 * synthetic events, the token, and small statistics helpers.
 */
import { Option, Redacted } from "effect"
import { SignJWT } from "jose"
import { makeTestConfig } from "../../src/config/AppConfig.ts"

/** Printed by a server on stdout, followed by its ports as JSON, once it accepts connections. */
export const READY_PREFIX = "BENCH_READY "
/** Printed by the load generator on stdout, followed by its result as JSON. */
export const RESULT_PREFIX = "BENCH_RESULT "

export const BENCH_USER = "bench-user"

export type ServerKind = "baseline" | "agent-chat" | "socketio"

/** What the load generator speaks: agent-chat's protocol (agent-chat and raw ws), or Socket.IO's. */
export type WireProtocol = "agent-chat" | "socket.io"

/**
 * The deployments of the `nodes` workload, all agent-chat on a fresh database of a real PostgreSQL: one node
 * (the in-process broker), or two nodes sharing that database and a broker (BROKER=redis, BROKER=postgres).
 */
export type NodesSetup = "one node" | "redis" | "postgres"

export interface ReadyLine {
  readonly kind: ServerKind
  readonly wsPort: number
  readonly controlPort: number
  readonly pid: number
  /** What stores the events: agent-chat's database, or the other servers' arrays. */
  readonly store: string
}

/** Event sizes of the spec: a 100-byte response delta and a 4 KB tool result. */
export type EventSize = "delta" | "tool"

export const SIZE_BYTES: Record<EventSize, number> = { delta: 100, tool: 4096 }

export interface PublishRequest {
  readonly thread_ids: ReadonlyArray<string>
  /** Events in all, spread round-robin over the threads. */
  readonly count: number
  readonly size: EventSize
  /** burst: as fast as the server takes them, in chunks; rate: open loop at `rate` events/s. */
  readonly mode: "burst" | "rate"
  readonly rate?: number
  /**
   * Store through the event log, as a run's events are, which delivers them once committed (on every node,
   * through the broker) instead of publishing them straight to the hub. Deltas only: a stored tool result
   * needs its tool call opened first.
   */
  readonly store?: boolean
}

export interface CpuTimes {
  readonly user: number
  readonly system: number
}

export interface PublishResult {
  readonly published: number
  readonly cpu_before: CpuTimes
  readonly cpu_after: CpuTimes
  /** performance.timeOrigin + performance.now() when publishing started and ended. */
  readonly started_at: number
  readonly ended_at: number
  /** Rate mode: the worst delay of the publisher behind its schedule. */
  readonly max_lag_ms: number
  /** Batches the server refused (an append that failed): their events never arrive. */
  readonly failed: number
}

/** The server's garbage collections since it started, those the bench forced left out. */
export interface GcTotals {
  readonly count: number
  readonly pause_ms: number
  /** Of `count`: mark-compacts (major), and scavenges (minor). */
  readonly major: number
  readonly minor: number
}

export interface StatsResult {
  readonly cpu: CpuTimes
  readonly memory: NodeJS.MemoryUsage
  readonly hub: { readonly connections: number; readonly [key: string]: unknown }
}

export const now = () => performance.timeOrigin + performance.now()

export const cpuMicros = (cpu: CpuTimes) => cpu.user + cpu.system

/** The secret of `makeTestConfig`, which both servers verify with. */
export const benchSecret = Redacted.value(Option.getOrThrow(makeTestConfig().jwtSecret))

export const signToken = (userId: string): Promise<string> => {
  const issuedAt = Math.floor(Date.now() / 1000)
  return new SignJWT({})
    .setProtectedHeader({ alg: "HS256", typ: "JWT" })
    .setSubject(userId)
    .setIssuedAt(issuedAt)
    .setExpirationTime(issuedAt + 4 * 3600)
    .sign(new TextEncoder().encode(benchSecret))
}

const filler = (n: number) => "x".repeat(n)
const FILLERS: Record<EventSize, string> = { delta: filler(SIZE_BYTES.delta), tool: filler(SIZE_BYTES.tool) }

/**
 * The data of a synthetic event. `t` (first, so the load generator finds it without parsing) is when the event
 * was due to be published, on the shared clock of `now()`.
 */
export const eventData = (size: EventSize, t: number): { readonly type: string; readonly data: unknown } =>
  size === "delta"
    ? { type: "agent_response_delta", data: { t, delta: FILLERS.delta } }
    : {
      type: "tool_completed",
      data: { t, tool_call_id: "call-1", tool: "search_thread", output: FILLERS.tool, duration_ms: 1 }
    }

// Statistics

export const sortedCopy = (values: ReadonlyArray<number>) => [...values].sort((a, b) => a - b)

export const median = (values: ReadonlyArray<number>): number => {
  const sorted = sortedCopy(values)
  const n = sorted.length
  if (n === 0) return Number.NaN
  const mid = Math.floor(n / 2)
  return n % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}

/** The q-quantile of an ascending array (nearest rank). */
export const quantile = (sorted: ArrayLike<number>, q: number): number => {
  const n = sorted.length
  if (n === 0) return Number.NaN
  return sorted[Math.min(n - 1, Math.max(0, Math.ceil(q * n) - 1))]!
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/** Rejects after `ms` with a message naming what did not happen. */
export const withDeadline = <A>(promise: Promise<A>, ms: number, what: string): Promise<A> => {
  let timer: NodeJS.Timeout | undefined
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not done within ${ms} ms`)), ms)
  })
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer))
}

/**
 * The sizes of each workload (full or `--quick`), their deadlines, and the
 * open-file limit that caps the connection counts.
 */
import { readFileSync } from "node:fs"
import type { WorkloadName } from "./report.ts"
import type { LoadSpec } from "./workloads.ts"

/** Descriptors a process needs besides its connections (listeners, the database, stdio, node itself). */
const RESERVED_FILES = 512
const TARGET_CONNECTIONS = 10_000

/** The soft open-file limit (node raises it to the hard limit at startup, and so do the children). */
export const limits = () => {
  let openFiles = Number.POSITIVE_INFINITY
  try {
    const line = readFileSync("/proc/self/limits", "utf8").split("\n").find((l) => l.startsWith("Max open files"))
    const soft = line?.split(/\s{2,}/)[1]
    if (soft !== undefined && soft !== "unlimited") openFiles = Number(soft)
  } catch {
    // not Linux: no cap known
  }
  const maxConnections = Math.max(100, Math.min(TARGET_CONNECTIONS, openFiles - RESERVED_FILES))
  const notes = maxConnections < TARGET_CONNECTIONS
    ? [
      `the open-file limit is ${openFiles}: connection counts are capped at ${maxConnections} ` +
      `(raise it with \`ulimit -n 20000\` to run 10,000 connections)`
    ]
    : []
  return { openFiles, maxConnections, notes }
}

export interface Plan {
  readonly specs: { readonly [W in WorkloadName]: Extract<LoadSpec, { readonly workload: W }> }
  readonly deadlines: Record<WorkloadName, number>
  readonly fanoutCounts: ReadonlyArray<number>
  /** The fan-out cases of the `nodes` workload: some of `fanoutCounts`, with 100 B deltas. */
  readonly nodesCounts: ReadonlyArray<number>
  /** Connections the memory workload must hold. */
  readonly held: number
}

export const planSpecs = (quick: boolean, maxConnections: number): Plan => {
  const cap = (n: number) => Math.min(n, maxConnections)
  const high = cap(quick ? 2_000 : 10_000)
  const fanoutCounts = [1, 10, 100, 1000].map(cap)
  const nodesCounts = (quick ? [1, 100] : [1, 100, 1000]).map(cap)
  const fanoutDeliveries = quick ? { delta: 20_000, tool: 10_000 } : { delta: 100_000, tool: 50_000 }
  const fanoutMaxEvents = quick ? 5_000 : 20_000
  return {
    held: high,
    fanoutCounts,
    nodesCounts,
    specs: {
      memory: { workload: "memory", low: Math.floor(high / 2), high, holdMs: quick ? 1_000 : 2_000 },
      fanout: {
        workload: "fanout",
        counts: fanoutCounts,
        sizes: ["delta", "tool"],
        deliveries: fanoutDeliveries,
        maxEvents: fanoutMaxEvents
      },
      latency: {
        workload: "latency",
        connections: cap(1_000),
        threads: cap(1_000),
        fixedRate: 10_000,
        fixedMs: quick ? 2_000 : 5_000,
        // The steady stream: 60 s at 5k events/s, with no major GC wanted.
        steadyRate: 5_000,
        steadyMs: quick ? 5_000 : 60_000,
        ladder: quick ? [5_000, 20_000] : [2_000, 5_000, 10_000, 20_000, 40_000, 80_000],
        stepMs: quick ? 1_000 : 2_000,
        bisect: quick ? 0 : 2,
        p99LimitMs: 10,
        warmupMs: quick ? 200 : 500
      },
      connect: {
        workload: "connect",
        setupCount: cap(quick ? 500 : 2_000),
        setupConcurrency: 100,
        stormConnections: cap(quick ? 1_000 : 5_000),
        stormThreads: quick ? 100 : 500,
        stormMissed: 20,
        stormConcurrency: cap(quick ? 1_000 : 5_000)
      },
      replay: { workload: "replay", events: quick ? 2_000 : 10_000, joins: quick ? 1 : 3 },
      // The fan-out of the fanout workload (its sizes, with deltas: a stored tool result needs its tool call
      // opened first), and a moderate rate of stored events, one append each: a hundred runs storing two
      // events a second, well below what one node stores (each append costs it 1–2 ms of CPU here).
      nodes: {
        workload: "nodes",
        fanout: { counts: nodesCounts, sizes: ["delta"], deliveries: fanoutDeliveries, maxEvents: fanoutMaxEvents },
        latency: {
          connections: cap(quick ? 50 : 100),
          threads: cap(quick ? 50 : 100),
          fixedRate: quick ? 100 : 200,
          fixedMs: quick ? 3_000 : 10_000,
          warmupMs: quick ? 300 : 1_000
        }
      },
      // Concurrent agent runs, each answering with 50 deltas a second (a model's pace) and a tool call, each
      // thread watched by three connections; the levels rise until the p99 passes 50 ms (or a run fails).
      agent: {
        workload: "agent",
        levels: (quick ? [10, 50] : [10, 25, 50, 100, 250, 500, 1_000, 2_000]).filter((n) => n * 3 <= maxConnections),
        watchers: 3,
        deltas: quick ? 300 : 400,
        rate: 50,
        warmupMs: quick ? 1_000 : 2_000,
        p99LimitMs: 50
      }
    },
    deadlines: {
      memory: 240_000,
      fanout: 300_000,
      latency: 300_000,
      connect: 300_000,
      replay: 180_000,
      nodes: 240_000,
      agent: 420_000
    }
  }
}

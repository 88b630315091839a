/**
 * From trials to figures: the metrics of each workload, their medians and
 * spreads (min–max) over trials, each agent-chat figure as a ratio to the
 * baseline (raw ws) and to Socket.IO of the same trial, the targets of the
 * spec, and the table; and
 * the `nodes` workload's own table, two nodes as a ratio to one.
 */
import { median, type NodesSetup } from "./common.ts"
import type { Plan } from "./plan.ts"
import type { LoadResult } from "./workloads.ts"

export type WorkloadName = "memory" | "fanout" | "latency" | "connect" | "replay" | "nodes" | "agent"

export interface Target {
  /** ratio: agent-chat / raw ws of the same trial; value: agent-chat's own figure. */
  readonly on: "ratio" | "value"
  readonly op: "<=" | ">="
  readonly limit: number
}

export interface MetricDef {
  readonly workload: WorkloadName
  readonly key: string
  readonly label: string
  readonly unit: string
  readonly target?: Target
}

const SIZE_LABEL = { delta: "100 B delta", tool: "4 KB tool result" } as const

/** Deliveries, server CPU per delivery and the load generator's CPU of each fan-out case. */
const fanoutDefs = (
  workload: WorkloadName,
  sizes: ReadonlyArray<keyof typeof SIZE_LABEL>,
  counts: ReadonlyArray<number>,
  target?: (n: number) => Target | undefined
): Array<MetricDef> =>
  sizes.flatMap((size) =>
    counts.flatMap((n): Array<MetricDef> => {
      const goal = target?.(n)
      return [
        {
          workload,
          key: `fanout_${size}_${n}_dps`,
          label: `fan-out ${SIZE_LABEL[size]} to ${n}: deliveries`,
          unit: "/s",
          ...(goal === undefined ? {} : { target: goal })
        },
        {
          workload,
          key: `fanout_${size}_${n}_cpu_us`,
          label: `fan-out ${SIZE_LABEL[size]} to ${n}: server CPU per delivery`,
          unit: "µs"
        },
        { workload, key: `fanout_${size}_${n}_load_cpu`, label: `  load generator CPU`, unit: "core" }
      ]
    })
  )

const rateLabel = (rate: number) => `${rate >= 1000 ? `${rate / 1000}k` : rate} ev/s`

/** The figures of a fixed-rate latency run. */
const fixedLatencyDefs = (
  workload: WorkloadName,
  spec: { readonly connections: number; readonly fixedRate: number },
  also: ReadonlyArray<"p999_ms" | "max_ms">
): Array<MetricDef> => {
  const at = `(${spec.connections.toLocaleString("en-US")} conn, ${rateLabel(spec.fixedRate)})`
  const rate = rateLabel(spec.fixedRate)
  return [
    { workload, key: "p50_ms", label: `latency p50 ${at}`, unit: "ms" },
    {
      workload,
      key: "p99_ms",
      label: `latency p99 ${at}`,
      unit: "ms",
      ...(workload === "latency" ? { target: valueMax(10) } : {})
    },
    ...also.map((key): MetricDef => ({
      workload,
      key,
      label: `latency ${key === "max_ms" ? "max" : "p99.9"} ${at}`,
      unit: "ms"
    })),
    { workload, key: "lost", label: `events not received (${rate})`, unit: "count", target: valueMax(0) },
    { workload, key: "server_cpu", label: `server CPU at ${rate}`, unit: "core" },
    { workload, key: "load_cpu", label: `load generator CPU at ${rate}`, unit: "core" }
  ]
}

/** The servers' garbage collections over the run, those the bench forced (for memory readings) left out. */
const gcDefs = (workload: WorkloadName): Array<MetricDef> => [
  { workload, key: "gc_count", label: "server GC: collections", unit: "count" },
  { workload, key: "gc_pause_ms", label: "server GC: pauses in all", unit: "ms" }
]

/** Each workload's figures, then its GC figures. */
const withGc = (defs: ReadonlyArray<MetricDef>): Array<MetricDef> =>
  defs.flatMap((d, i) => defs[i + 1]?.workload === d.workload ? [d] : [d, ...gcDefs(d.workload)])

export const metricDefs = (plan: Plan): ReadonlyArray<MetricDef> =>
  withGc([
    ...mainDefs(plan.fanoutCounts, plan.held, plan.specs.latency),
    ...fanoutDefs("nodes", ["delta"], plan.nodesCounts),
    ...fixedLatencyDefs("nodes", plan.specs.nodes.latency, ["max_ms"])
  ])

const mainDefs = (
  counts: ReadonlyArray<number>,
  held: number,
  latency: {
    readonly connections: number
    readonly fixedRate: number
    readonly steadyRate: number
    readonly steadyMs: number
  }
): ReadonlyArray<MetricDef> => {
  const steadyLabel = `(${latency.steadyMs / 1000} s at ${rateLabel(latency.steadyRate)})`
  return [
    {
      workload: "memory",
      key: "rss_kb",
      label: "RSS per idle authenticated connection",
      unit: "KiB",
      target: ratioMax(2)
    },
    { workload: "memory", key: "heap_kb", label: "JS heap per idle authenticated connection", unit: "KiB" },
    { workload: "memory", key: "external_kb", label: "external memory per connection", unit: "KiB" },
    { workload: "memory", key: "held", label: "connections held", unit: "conn", target: valueMin(held) },
    { workload: "memory", key: "idle_cpu", label: "server CPU while the connections idle", unit: "core" },
    { workload: "memory", key: "errors", label: "connection errors", unit: "count", target: valueMax(0) },
    { workload: "memory", key: "open_rate", label: "open rate while filling", unit: "conn/s" },
    { workload: "memory", key: "load_cpu", label: "load generator CPU while opening", unit: "core" },
    ...fanoutDefs("fanout", ["delta", "tool"], counts, (n) => n === 1000 ? ratioMin(1) : undefined),
    ...fixedLatencyDefs("latency", latency, ["p999_ms"]),
    { workload: "latency", key: "max_rate", label: "highest rate with p99 ≤ 10 ms", unit: "ev/s" },
    { workload: "latency", key: "steady_p99_ms", label: `latency p99, steady ${steadyLabel}`, unit: "ms" },
    {
      workload: "latency",
      key: "steady_major_gc",
      label: `major GCs, steady ${steadyLabel}`,
      unit: "count",
      target: valueMax(0)
    },
    {
      workload: "latency",
      key: "steady_scavenges_per_kevent",
      label: `scavenges per 1,000 events, steady ${steadyLabel}`,
      unit: "count"
    },
    { workload: "connect", key: "setup_rate", label: "connection setup rate", unit: "conn/s" },
    { workload: "connect", key: "setup_p99_ms", label: "connection setup p99", unit: "ms" },
    { workload: "connect", key: "storm_reconnect_s", label: "storm: all reconnected", unit: "s" },
    { workload: "connect", key: "storm_catchup_s", label: "storm: all reconnected and replayed", unit: "s" },
    { workload: "connect", key: "storm_errors", label: "storm: errors", unit: "count", target: valueMax(0) },
    { workload: "connect", key: "storm_gaps", label: "storm: gaps or duplicates", unit: "count", target: valueMax(0) },
    { workload: "connect", key: "storm_load_cpu", label: "storm: load generator CPU", unit: "core" },
    {
      workload: "replay",
      key: "replay_ms",
      label: "replay of stored events on join_thread",
      unit: "ms",
      target: valueMax(1000)
    },
    { workload: "replay", key: "replay_first_ms", label: "  first join (cold)", unit: "ms" }
  ]
}

function ratioMax(limit: number): Target {
  return { on: "ratio", op: "<=", limit }
}
function ratioMin(limit: number): Target {
  return { on: "ratio", op: ">=", limit }
}
function valueMax(limit: number): Target {
  return { on: "value", op: "<=", limit }
}
function valueMin(limit: number): Target {
  return { on: "value", op: ">=", limit }
}

export interface Spread {
  readonly median: number | null
  readonly min: number | null
  readonly max: number | null
  readonly n: number
}

/** What one run gave: its result, or why it has none. */
export type RunResult = LoadResult | { readonly error: string }

export interface TrialResults {
  readonly trial: number
  readonly order: ReadonlyArray<string>
  baseline?: RunResult | undefined
  agent?: RunResult | undefined
  socketio?: RunResult | undefined
}

export interface Row extends MetricDef {
  readonly baseline: Spread
  readonly agent: Spread
  readonly ratio: Spread
  /** Socket.IO's figures, and agent-chat's as a ratio to them; empty where Socket.IO did not run. */
  readonly socketio: Spread
  readonly ratioSocketio: Spread
  readonly pass: boolean | null
}

const spread = (values: ReadonlyArray<number>): Spread =>
  values.length === 0
    ? { median: null, min: null, max: null, n: 0 }
    : { median: median(values), min: Math.min(...values), max: Math.max(...values), n: values.length }

const metricOf = (result: TrialResults["baseline"], key: string): number | null => {
  if (result === undefined || "error" in result) return null
  const value = result.metrics[key]
  return typeof value === "number" && Number.isFinite(value) ? value : null
}

/** The figures of one server over the trials, and agent-chat's as a ratio to them in the same trial. */
const against = (
  def: MetricDef,
  trials: ReadonlyArray<TrialResults>,
  of: (t: TrialResults) => RunResult | undefined
) => {
  const pairs = trials.map((t) => [metricOf(of(t), def.key), metricOf(t.agent, def.key)] as const)
  return {
    figures: spread(pairs.flatMap(([b]) => b === null ? [] : [b])),
    ratio: spread(pairs.flatMap(([b, a]) => a === null || b === null || b === 0 ? [] : [a / b]))
  }
}

export const summarise = (def: MetricDef, trials: ReadonlyArray<TrialResults>): Row => {
  const { figures: baseline, ratio } = against(def, trials, (t) => t.baseline)
  const { figures: socketio, ratio: ratioSocketio } = against(def, trials, (t) => t.socketio)
  const agent = spread(trials.flatMap((t) => {
    const a = metricOf(t.agent, def.key)
    return a === null ? [] : [a]
  }))
  const target = def.target
  const subject = target === undefined ? null : target.on === "ratio" ? ratio.median : agent.median
  const pass = target === undefined || subject === null
    ? null
    : target.op === "<="
    ? subject <= target.limit
    : subject >= target.limit
  return { ...def, baseline, agent, ratio, socketio, ratioSocketio, pass }
}

export const format = (value: number | null): string => {
  if (value === null) return "–"
  const abs = Math.abs(value)
  if (abs >= 10_000) return Math.round(value).toLocaleString("en-US")
  if (abs >= 100) return value.toFixed(0)
  if (abs >= 10) return value.toFixed(1)
  if (abs >= 1) return value.toFixed(2)
  return value === 0 ? "0" : value.toFixed(3)
}

const cell = (s: Spread, suffix = "") =>
  s.median === null
    ? "–"
    : s.n > 1 && s.min !== s.max
    ? `${format(s.median)}${suffix} [${format(s.min)}–${format(s.max)}]`
    : `${format(s.median)}${suffix}`

const targetText = (t: Target | undefined) =>
  t === undefined ? "" : `${t.on === "ratio" ? "ratio" : "value"} ${t.op === "<=" ? "≤" : "≥"} ${t.limit}`

const markdown = (header: ReadonlyArray<string>, lines: ReadonlyArray<ReadonlyArray<string>>): string => {
  const widths = header.map((h, i) => Math.max(3, h.length, ...lines.map((l) => l[i]!.length)))
  const render = (cells: ReadonlyArray<string>) => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(" | ")} |`
  return [render(header), render(widths.map((w) => "-".repeat(w))), ...lines.map(render)].join("\n")
}

const passText = (row: Row) => row.pass === null ? "" : row.pass ? "ok" : "MISS"

/** A Markdown table: medians, with the spread over trials as [min–max] when it is not a single value. */
export const table = (rows: ReadonlyArray<Row>): string =>
  markdown(
    [
      "workload",
      "metric",
      "unit",
      "raw ws",
      "agent-chat",
      "Socket.IO",
      "agent-chat : raw ws",
      "agent-chat : Socket.IO",
      "target",
      ""
    ],
    rows.map((r) => [
      r.workload,
      r.label,
      r.unit,
      cell(r.baseline),
      cell(r.agent),
      cell(r.socketio),
      cell(r.ratio, "×"),
      cell(r.ratioSocketio, "×"),
      targetText(r.target),
      passText(r)
    ])
  )

/** The brokers of the `nodes` workload's two nodes, each against the one node. */
type NodesBroker = Exclude<NodesSetup, "one node">

/** One trial of the `nodes` workload: a run of each setup, or why it was not run. */
export interface NodesTrial {
  readonly trial: number
  readonly order: ReadonlyArray<NodesSetup>
  readonly runs: Partial<Record<NodesSetup, RunResult>>
}

/** A metric of the `nodes` workload on each broker: the one node as the baseline, two nodes as the subject. */
export interface NodesRow {
  readonly def: MetricDef
  readonly brokers: Readonly<Record<NodesBroker, Row>>
}

export const nodesRows = (defs: ReadonlyArray<MetricDef>, trials: ReadonlyArray<NodesTrial>): Array<NodesRow> =>
  defs.filter((d) => d.workload === "nodes").map((def) => {
    const on = (broker: NodesBroker) =>
      summarise(
        def,
        trials.map((t) => ({ trial: t.trial, order: t.order, baseline: t.runs["one node"], agent: t.runs[broker] }))
      )
    return { def, brokers: { redis: on("redis"), postgres: on("postgres") } }
  })

/** The `nodes` table: one node, then each broker's two nodes and their ratio to the one node. */
export const nodesTable = (rows: ReadonlyArray<NodesRow>): string =>
  markdown(
    ["metric", "unit", "one node", "two nodes, redis", "ratio", "two nodes, postgres", "ratio", ""],
    rows.map(({ brokers, def }) => [
      def.label,
      def.unit,
      cell(brokers.redis.baseline),
      cell(brokers.redis.agent),
      cell(brokers.redis.ratio, "×"),
      cell(brokers.postgres.agent),
      cell(brokers.postgres.ratio, "×"),
      [passText(brokers.redis), passText(brokers.postgres)].filter((p) => p !== "").join(" ")
    ])
  )

/**
 * From trials to figures: the metrics of each workload, their medians and
 * spreads (min–max) over trials, each agent-chat figure as a ratio to the
 * baseline of the same trial, the targets of the spec, and the table.
 */
import { median } from "./common.ts"
import type { LoadResult } from "./workloads.ts"

export type WorkloadName = "memory" | "fanout" | "latency" | "connect" | "replay"

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

export const metricDefs = (counts: ReadonlyArray<number>, held: number): ReadonlyArray<MetricDef> => [
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
  ...(["delta", "tool"] as const).flatMap((size) =>
    counts.flatMap((n): Array<MetricDef> => [
      {
        workload: "fanout",
        key: `fanout_${size}_${n}_dps`,
        label: `fan-out ${SIZE_LABEL[size]} to ${n}: deliveries`,
        unit: "/s",
        ...(n === 1000 ? { target: ratioMin(1) } : {})
      },
      {
        workload: "fanout",
        key: `fanout_${size}_${n}_cpu_us`,
        label: `fan-out ${SIZE_LABEL[size]} to ${n}: server CPU per delivery`,
        unit: "µs"
      },
      { workload: "fanout", key: `fanout_${size}_${n}_load_cpu`, label: `  load generator CPU`, unit: "core" }
    ])
  ),
  { workload: "latency", key: "p50_ms", label: "latency p50 (1,000 conn, 10k ev/s)", unit: "ms" },
  { workload: "latency", key: "p99_ms", label: "latency p99 (1,000 conn, 10k ev/s)", unit: "ms", target: valueMax(10) },
  { workload: "latency", key: "p999_ms", label: "latency p99.9 (1,000 conn, 10k ev/s)", unit: "ms" },
  { workload: "latency", key: "lost", label: "events not received (10k ev/s)", unit: "count", target: valueMax(0) },
  { workload: "latency", key: "server_cpu", label: "server CPU at 10k ev/s", unit: "core" },
  { workload: "latency", key: "load_cpu", label: "load generator CPU at 10k ev/s", unit: "core" },
  { workload: "latency", key: "max_rate", label: "highest rate with p99 ≤ 10 ms", unit: "ev/s" },
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

export interface TrialResults {
  readonly trial: number
  readonly order: ReadonlyArray<string>
  baseline?: LoadResult | { readonly error: string }
  agent?: LoadResult | { readonly error: string }
}

export interface Row extends MetricDef {
  readonly baseline: Spread
  readonly agent: Spread
  readonly ratio: Spread
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

export const summarise = (def: MetricDef, trials: ReadonlyArray<TrialResults>): Row => {
  const pairs = trials.map((t) => [metricOf(t.baseline, def.key), metricOf(t.agent, def.key)] as const)
  const baseline = spread(pairs.flatMap(([b]) => b === null ? [] : [b]))
  const agent = spread(pairs.flatMap(([, a]) => a === null ? [] : [a]))
  const ratio = spread(pairs.flatMap(([b, a]) => a === null || b === null || b === 0 ? [] : [a / b]))
  const target = def.target
  const subject = target === undefined ? null : target.on === "ratio" ? ratio.median : agent.median
  const pass = target === undefined || subject === null
    ? null
    : target.op === "<="
    ? subject <= target.limit
    : subject >= target.limit
  return { ...def, baseline, agent, ratio, pass }
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

/** A Markdown table: medians, with the spread over trials as [min–max] when it is not a single value. */
export const table = (rows: ReadonlyArray<Row>): string => {
  const header = ["workload", "metric", "unit", "raw ws", "agent-chat", "ratio", "target", ""]
  const lines = rows.map((r) => [
    r.workload,
    r.label,
    r.unit,
    cell(r.baseline),
    cell(r.agent),
    cell(r.ratio, "×"),
    targetText(r.target),
    r.pass === null ? "" : r.pass ? "ok" : "MISS"
  ])
  const widths = header.map((h, i) => Math.max(3, h.length, ...lines.map((l) => l[i]!.length)))
  const render = (cells: ReadonlyArray<string>) => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(" | ")} |`
  return [render(header), render(widths.map((w) => "-".repeat(w))), ...lines.map(render)].join("\n")
}

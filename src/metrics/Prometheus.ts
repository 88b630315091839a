/**
 * Prometheus text format (version 0.0.4) from Effect's metric snapshot and
 * the hub's counters. Written here rather than taken from an exporter: no
 * Effect 3 package exports Prometheus, and the OpenTelemetry route costs a
 * handful of dependencies for what is sixty lines of formatting.
 */
import { Option } from "effect"
import type * as MetricPair from "effect/MetricPair"
import * as MetricState from "effect/MetricState"
import type { Buckets } from "./Metrics.ts"

export type Labels = Record<string, string>

const escape = (value: string) => value.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, "\\\"")

const labelText = (labels: Labels, extra?: Labels) => {
  const all = { ...labels, ...extra }
  const keys = Object.keys(all)
  return keys.length === 0 ? "" : `{${keys.map((k) => `${k}="${escape(all[k]!)}"`).join(",")}}`
}

const number = (value: number | bigint) =>
  typeof value === "bigint" ? value.toString() : Number.isFinite(value) ? String(value) : value > 0 ? "+Inf" : "-Inf"

export class PrometheusText {
  private readonly lines: Array<string> = []
  private readonly described = new Set<string>()

  describe(name: string, type: "counter" | "gauge" | "histogram", help: string) {
    if (this.described.has(name)) return this
    this.described.add(name)
    this.lines.push(`# HELP ${name} ${help.replace(/\n/g, " ")}`, `# TYPE ${name} ${type}`)
    return this
  }

  sample(name: string, value: number | bigint, labels: Labels = {}) {
    this.lines.push(`${name}${labelText(labels)} ${number(value)}`)
    return this
  }

  /** A metric with one unlabelled sample: its HELP and TYPE, then the value. */
  single(name: string, type: "counter" | "gauge", help: string, value: number | bigint) {
    return this.describe(name, type, help).sample(name, value)
  }

  histogram(
    name: string,
    buckets: ReadonlyArray<readonly [number, number]>,
    count: number,
    sum: number,
    labels: Labels = {}
  ) {
    for (const [bound, cumulative] of buckets) {
      if (Number.isFinite(bound)) this.sample(`${name}_bucket`, cumulative, { ...labels, le: String(bound) })
    }
    this.sample(`${name}_bucket`, count, { ...labels, le: "+Inf" })
    this.sample(`${name}_sum`, sum, labels)
    return this.sample(`${name}_count`, count, labels)
  }

  buckets(name: string, buckets: Buckets, labels: Labels = {}) {
    let cumulative = 0
    const pairs = buckets.bounds.map((bound, i) => [bound, cumulative += buckets.counts[i]!] as const)
    return this.histogram(name, pairs, buckets.count, buckets.sum, labels)
  }

  /** Every Effect metric of the snapshot whose name starts with `prefix`. */
  effectMetrics(pairs: ReadonlyArray<MetricPair.MetricPair.Untyped>, prefix: string) {
    // A family's samples must stand together.
    const sorted = [...pairs].sort((a, b) => a.metricKey.name.localeCompare(b.metricKey.name))
    for (const { metricKey, metricState } of sorted) {
      if (!metricKey.name.startsWith(prefix)) continue
      const labels: Labels = Object.fromEntries(metricKey.tags.map((tag) => [tag.key, tag.value]))
      const help = Option.getOrElse(metricKey.description, () => metricKey.name)
      if (MetricState.isCounterState(metricState)) {
        this.describe(metricKey.name, "counter", help).sample(metricKey.name, metricState.count, labels)
      } else if (MetricState.isGaugeState(metricState)) {
        this.describe(metricKey.name, "gauge", help).sample(metricKey.name, metricState.value, labels)
      } else if (MetricState.isHistogramState(metricState)) {
        this.describe(metricKey.name, "histogram", help)
          .histogram(metricKey.name, metricState.buckets, metricState.count, metricState.sum, labels)
      }
    }
    return this
  }

  toString() {
    return this.lines.join("\n") + "\n"
  }
}

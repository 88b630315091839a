/**
 * The deployments and the table of the `agent` workload (agentload.ts):
 * agent-chat alone, its runs answered by the paced fake model, on the
 * embedded database and on a fresh database of the machine's PostgreSQL
 * (the `nodes` workload's, one node), each with the delta coalescing of
 * its setup (DELTA_COALESCE_MS). On PostgreSQL the load generator then
 * runs the plain `pg` script on the same database: the stored rate as a
 * share of it is the figure the design is judged by.
 */
import type { LevelResult } from "./agentload.ts"
import type { Nodes } from "./nodes.ts"
import type { Deployment, Processes } from "./processes.ts"
import type { RunResult } from "./report.ts"

export interface AgentSetup {
  readonly label: string
  readonly store: "embedded" | "postgres"
  readonly coalesceMs: number
}

/** The setups, from BENCH_AGENT_COALESCE (comma-separated milliseconds) or the default: off, and 20 ms. */
export const agentSetups = (postgres: boolean, coalesce = process.env.BENCH_AGENT_COALESCE): Array<AgentSetup> => {
  const values = (coalesce ?? "0,20").split(",").map(Number).filter((n) => Number.isFinite(n) && n >= 0)
  const stores: Array<AgentSetup["store"]> = postgres ? ["embedded", "postgres"] : ["embedded"]
  return stores.flatMap((store) =>
    values.map((coalesceMs): AgentSetup => ({
      label: `${store === "embedded" ? "embedded" : "PostgreSQL"}, coalesce ${coalesceMs} ms`,
      store,
      coalesceMs
    }))
  )
}

export const deployAgent = (processes: Processes, nodes: Nodes, setup: AgentSetup): Promise<Deployment> => {
  const env = { BENCH_MODEL: "stream", BENCH_DELTA_COALESCE_MS: String(setup.coalesceMs) }
  return setup.store === "embedded" ? processes.deploy("agent-chat", env) : nodes.deploy("one node", env)
}

export interface AgentTrial {
  readonly trial: number
  readonly runs: Record<string, RunResult>
}

const fmt = (value: number | null | undefined, digits = 0) =>
  value === null || value === undefined ? "–" : value.toLocaleString("en-US", { maximumFractionDigits: digits })

/** One line per setup and trial, then each level's figures. */
export const agentTable = (trials: ReadonlyArray<AgentTrial>, limitMs: number): string => {
  const lines: Array<string> = [
    `| setup | trial | runs held (p99 ≤ ${limitMs} ms) | p99 there | delta events/s there | chunks/s there | ` +
    "plain pg rows/s | stored / plain | levels: runs → p99 ms, events/s |",
    "|---|---|---|---|---|---|---|---|---|"
  ]
  for (const { runs, trial } of trials) {
    for (const [label, result] of Object.entries(runs)) {
      if ("error" in result) {
        lines.push(`| ${label} | ${trial} | error: ${result.error.split("\n")[0]} | | | | | | |`)
        continue
      }
      const m = result.metrics
      const levels = (result.details.levels ?? []) as ReadonlyArray<LevelResult>
      const plain = m.plain_rows_s ?? null
      const share = plain === null || plain === 0 ? null : (m.top_events_s ?? 0) / plain
      const steps = levels.map((l) =>
        `${l.runs} → ${fmt(l.p99_ms, 1)}, ${fmt(l.events_s)}${l.completed < l.runs ? ` (${l.completed} ended)` : ""}`
      ).join("; ")
      lines.push(
        `| ${label} | ${trial} | ${fmt(m.runs_held)} | ${fmt(m.held_p99_ms, 1)} | ${fmt(m.held_events_s)} | ` +
          `${fmt(m.held_chunks_s)} | ${fmt(plain)} | ${share === null ? "–" : `${(share * 100).toFixed(0)} %`} | ` +
          `${steps} |`
      )
    }
  }
  return lines.join("\n")
}

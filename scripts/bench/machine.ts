/**
 * Other work on the benchmark's two cores spoils its figures, and on a
 * shared machine other processes (test suites, other benchmarks) come and
 * go. From /proc/stat and /proc/<pid>/stat this tells how much CPU on cores
 * 0 and 1 was not the benchmark's own during a run ("foreign"), and waits,
 * within a bounded budget, for the cores to be quiet before a run starts.
 */
import { execFileSync } from "node:child_process"
import { readdirSync, readFileSync } from "node:fs"
import { availableParallelism, cpus, release } from "node:os"
import { sleep } from "./common.ts"

/** /proc times are in USER_HZ ticks, 100 per second on Linux. */
const TICKS_PER_SECOND = 100

interface CoreTimes {
  /** user + nice + system, in ticks: what processes ran. */
  readonly busy: number
  /** Ticks stolen by the hypervisor. */
  readonly steal: number
}

const readCores = (cores: ReadonlyArray<string>): CoreTimes | undefined => {
  try {
    let busy = 0
    let steal = 0
    for (const line of readFileSync("/proc/stat", "utf8").split("\n")) {
      const [name, user, nice, system, , , , , stolen] = line.split(/\s+/)
      if (name === undefined || !cores.includes(name)) continue
      busy += Number(user) + Number(nice) + Number(system)
      steal += Number(stolen ?? 0)
    }
    return { busy, steal }
  } catch {
    return undefined
  }
}

/** utime + stime of a process, in ticks. */
const processTicks = (pid: number | undefined): number => {
  if (pid === undefined) return 0
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
    return Number(fields[11]) + Number(fields[12])
  } catch {
    return 0
  }
}

/** The pids of the processes whose command line matches `pattern`. */
const pidsMatching = (pattern: RegExp): Array<number> => {
  const pids: Array<number> = []
  try {
    for (const entry of readdirSync("/proc")) {
      if (!/^\d+$/.test(entry)) continue
      try {
        if (pattern.test(readFileSync(`/proc/${entry}/cmdline`, "latin1").replaceAll("\0", " "))) {
          pids.push(Number(entry))
        }
      } catch {
        // gone meanwhile
      }
    }
  } catch {
    // not Linux
  }
  return pids
}

/**
 * Starts counting the CPU of some processes: `pids`, and those whose command line matches `services`, which
 * may come and go meanwhile (a database's backends). Returns the ticks they used since.
 */
export const ticksSince = (pids: ReadonlyArray<number | undefined>, services?: RegExp): () => number => {
  const read = () => {
    const ticks = new Map<number, number>()
    for (const pid of [...pids, ...(services === undefined ? [] : pidsMatching(services))]) {
      if (pid !== undefined) ticks.set(pid, processTicks(pid))
    }
    return ticks
  }
  const start = read()
  return () => {
    let used = 0
    for (const [pid, ticks] of read()) used += Math.max(0, ticks - (start.get(pid) ?? 0))
    return used
  }
}

export interface Window {
  /** Ends the window: `ownTicks` is the CPU the benchmark's processes used in it. */
  readonly end: (ownTicks: number) => { readonly foreign: number; readonly steal: number } | undefined
}

export class Machine {
  private readonly cores: ReadonlyArray<string>
  waitedMs = 0

  constructor(pinned: boolean, private readonly waitBudgetMs: number) {
    this.cores = pinned ? ["cpu0", "cpu1"] : ["cpu"]
  }

  /** Starts measuring; the runner's own CPU is counted as the benchmark's. */
  window(): Window {
    const start = readCores(this.cores)
    const startedAt = Date.now()
    const runner = process.cpuUsage()
    return {
      end: (ownTicks) => {
        const end = readCores(this.cores)
        const seconds = (Date.now() - startedAt) / 1000
        if (start === undefined || end === undefined || seconds <= 0) return undefined
        const used = process.cpuUsage(runner)
        const runnerTicks = (used.user + used.system) / 1e6 * TICKS_PER_SECOND
        const foreignTicks = Math.max(0, end.busy - start.busy - ownTicks - runnerTicks)
        return {
          foreign: foreignTicks / TICKS_PER_SECOND / seconds,
          steal: (end.steal - start.steal) / TICKS_PER_SECOND / seconds
        }
      }
    }
  }

  /**
   * Waits until other processes use less than `threshold` of a core on the benchmark's cores over a second, for
   * at most `maxMs` and within what is left of the budget. Returns the last foreign load seen.
   */
  async waitQuiet(threshold: number, maxMs: number): Promise<number> {
    const until = Date.now() + Math.min(maxMs, Math.max(0, this.waitBudgetMs - this.waitedMs))
    for (;;) {
      const started = Date.now()
      const window = this.window()
      await sleep(1000)
      const foreign = window.end(0)?.foreign ?? 0
      if (foreign < threshold || Date.now() >= until) return foreign
      await sleep(1000)
      this.waitedMs += Date.now() - started
    }
  }
}

/** The CPU model, core count, kernel and node version, for the table's caption. */
export const describeMachine = () => {
  let model = cpus()[0]?.model ?? "unknown CPU"
  try {
    const line = execFileSync("lscpu", { encoding: "utf8" }).split("\n").find((l) => l.startsWith("Model name:"))
    if (line !== undefined) model = line.slice("Model name:".length).trim()
  } catch {
    // no lscpu: keep what node reports
  }
  return { cpu: model, cores: availableParallelism(), kernel: release(), node: process.version }
}

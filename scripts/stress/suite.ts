/**
 * The stress scenarios and their sizes. `scale` 1 is the full run of
 * `npm run stress` (the counts the invariants promise); the test suite
 * runs the same scenarios at a small scale. Every scenario starts its own
 * server, so one cannot disturb another's counts.
 */
import { churnScenario } from "./churn.ts"
import { Budget, errorMessage, type Invariant, invariant } from "./common.ts"
import { framesScenario } from "./frames.ts"
import { isolationScenario } from "./isolation.ts"
import { lifecycleScenario } from "./lifecycle.ts"
import { replayScenario } from "./replay.ts"
import { stallScenario } from "./stall.ts"

export interface SuiteOptions {
  readonly seed: number
  readonly scale: number
  /** Scenario names to run; all when empty. */
  readonly only?: ReadonlyArray<string>
  /** Called with each scenario's invariants as it ends. */
  readonly onScenario?: (name: string, invariants: ReadonlyArray<Invariant>, ms: number) => void
}

const atLeast = (min: number, n: number) => Math.max(min, Math.round(n))

/** Threads each keep a run going, so a kill finds most of them in flight: a bound the kills can reach. */
const lifecycleSizes = (seed: number, scale: number) => {
  const threads = atLeast(4, 32 * scale)
  const kills = atLeast(1, 5 * scale)
  return {
    seed,
    threads,
    owners: atLeast(2, 4 * scale),
    kills,
    minInFlight: Math.min(atLeast(2, 100 * scale), Math.round(0.65 * threads * kills))
  }
}

/** Each scenario with its sizes at `scale`, and a time budget that fails it rather than hang the run. */
export const scenarios = (seed: number, scale: number) => [
  {
    name: "replay",
    budgetMs: 300_000,
    run: (budget: Budget) =>
      replayScenario({
        seed,
        cycles: atLeast(10, 1000 * scale),
        observers: atLeast(3, 8 * Math.min(1, scale * 4)),
        threads: 4,
        threadsPerObserver: 2,
        pieces: 40,
        pieceDelayMs: 20,
        maxDwellMs: 120,
        reconnectWidth: 4
      }, budget)
  },
  {
    name: "stall",
    budgetMs: 180_000,
    run: (budget: Budget) =>
      stallScenario({ seed, rounds: atLeast(1, 3 * scale), readers: 3, pieces: 160, pieceBytes: 64 * 1024 }, budget)
  },
  {
    name: "isolation",
    budgetMs: 180_000,
    run: (budget: Budget) =>
      isolationScenario({
        seed,
        users: 8,
        threads: 12,
        actions: atLeast(60, 3000 * scale)
      }, budget)
  },
  {
    name: "churn",
    budgetMs: 300_000,
    run: (budget: Budget) =>
      churnScenario({ seed, cycles: atLeast(300, 10_000 * scale), width: 16, heapBoundBytes: 5 * 1024 * 1024 }, budget)
  },
  {
    name: "lifecycle",
    budgetMs: 600_000,
    run: (budget: Budget) => lifecycleScenario(lifecycleSizes(seed, scale), budget)
  },
  {
    name: "frames",
    budgetMs: 180_000,
    run: (budget: Budget) => framesScenario({ seed, frames: atLeast(500, 10_000 * scale), connections: 4 }, budget)
  }
]

/** Runs the scenarios one after another; a scenario that throws fails with the reason. */
export const runSuite = async (options: SuiteOptions): Promise<Array<Invariant>> => {
  const results: Array<Invariant> = []
  for (const scenario of scenarios(options.seed, options.scale)) {
    if (options.only !== undefined && options.only.length > 0 && !options.only.includes(scenario.name)) continue
    const started = Date.now()
    const budget = new Budget(scenario.name, scenario.budgetMs)
    const invariants = await scenario.run(budget).catch((error) => [
      invariant(`${scenario.name}: scenario completed`, false, {}, errorMessage(error))
    ])
    results.push(...invariants)
    options.onScenario?.(scenario.name, invariants, Date.now() - started)
  }
  return results
}

/** One line per invariant: PASS or FAIL, its name and its counts, and why when it failed. */
export const format = (result: Invariant) => {
  const counts = Object.entries(result.counts).map(([key, value]) => `${key}=${value}`).join(" ")
  const why = result.passed || result.detail === undefined ? "" : `\n       ${result.detail}`
  return `${result.passed ? "PASS" : "FAIL"}  ${result.name}\n       ${counts}${why}`
}

/**
 * The run lifecycle under random interleavings: two server processes on one
 * store, runs whose model thinks, answers and calls tools (two in a turn,
 * sometimes a repeated id) that answer, fail, hang past the tool timeout or
 * take their time, cancels at random moments through either process, the
 * database lost and back, one process cut off from it, commits that fail
 * before or after applying, and outages longer than a lease, so that the
 * other process ends the runs it sees expire. Once the database is back and
 * everything has settled, every run has ended, every thread's log keeps the
 * rules, each refusal was of an event that broke them, and each end is the
 * one its cause called for (see LifecycleOracle.ts).
 */
import { it } from "@effect/vitest"
import { Cause, Exit } from "effect"
import { drive } from "../utils/LifecycleDriver.ts"
import { lifecycleViolations } from "../utils/LifecycleOracle.ts"
import { type Scenario, scenario } from "../utils/LifecycleScenario.ts"
import { simulate } from "../utils/Simulation.ts"

const LIMITS = { horizon: 120_000, steps: 2_000_000 }

const expectLifecycle = (s: Scenario) => {
  const exit = simulate(drive(s), s.seed, LIMITS)
  if (Exit.isFailure(exit)) throw new Error(`the scenario failed: ${Cause.pretty(exit.cause)}`)
  const violations = lifecycleViolations(s, exit.value)
  // In the message, so that fast-check's report of the shrunk scenario says what went wrong with it.
  if (violations.length > 0) throw new Error(`the lifecycle broke:\n${violations.join("\n")}`)
}

// 300 cases take 15 to 20 s alone on this machine; twice that beside another suite.
it.prop("every run ends, once, as its cause calls for", [scenario], ([s]) => expectLifecycle(s), {
  fastCheck: { numRuns: 300 },
  timeout: 120_000
})

/** Scenarios the property once shrank to, kept so that what they found stays fixed. */
const found: ReadonlyArray<readonly [string, Scenario]> = [
  [
    "a run whose end committed but lost its answer is reported as ended by its own process",
    { seed: 0, stagger: 0, actions: [{ send: [[]], thread: 0, via: 1 }, { failCommit: "after" }, { wait: 1 }] }
  ],
  [
    "a cancel whose end committed but lost its answer is acknowledged",
    {
      seed: 0,
      stagger: 0,
      actions: [
        { send: [[{ call: "slow", id: "c1", ms: 90 }]], thread: 0, via: 1 },
        { wait: 10 },
        { failCommit: "after" },
        { cancel: 0, via: 1 },
        { wait: 50 }
      ]
    }
  ],
  [
    "a run outlives two failed lease renewals of its process",
    { seed: 0, stagger: 0, actions: [{ wait: 37 }, { send: [[]], thread: 0, via: 1 }, { cut: 1 }, { wait: 88 }] }
  ]
]

it.each(found)("%s", (_, s) => expectLifecycle(s))

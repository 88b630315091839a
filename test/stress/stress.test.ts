/**
 * The short run of the stress suite inside `npm test`: every scenario at
 * a small scale with a fixed seed, and every invariant must hold. The full
 * run is `npm run stress`.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { format, runSuite, scenarios } from "../../scripts/stress/suite.ts"

const SEED = 20261122
const SCALE = 0.02

describe("stress suite, short run", () => {
  for (const { name } of scenarios(SEED, SCALE)) {
    it.live(name, () =>
      Effect.promise(() => runSuite({ seed: SEED, scale: SCALE, only: [name] })).pipe(
        Effect.map((results) => {
          expect(results.length).toBeGreaterThan(0)
          for (const result of results) expect(result.passed, format(result)).toBe(true)
        })
      ), 120_000)
  }
})

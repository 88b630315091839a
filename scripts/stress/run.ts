/**
 * `npm run stress`: runs every scenario against an in-process server and
 * prints each invariant with its counts, then `N passed, N failed`; the
 * exit code is non-zero when any failed.
 *
 *   npm run stress -- --seed 42 --scale 0.1 --only replay,churn
 */
import { parseArgs } from "node:util"
import { format, runSuite } from "./suite.ts"

const { values } = parseArgs({
  options: {
    seed: { type: "string" },
    scale: { type: "string", default: "1" },
    only: { type: "string", default: "" }
  }
})
const seed = values.seed === undefined ? Math.floor(Math.random() * 2 ** 31) : Number(values.seed)
const scale = Number(values.scale)
if (!Number.isInteger(seed) || !(scale > 0)) {
  console.error("usage: npm run stress -- [--seed <integer>] [--scale <number > 0>] [--only <name,name>]")
  process.exit(2)
}

const started = Date.now()
console.log(`stress: seed ${seed}, scale ${scale} (repeat with --seed ${seed} --scale ${scale})`)
const results = await runSuite({
  seed,
  scale,
  only: values.only.split(",").filter((name) => name.length > 0),
  onScenario: (name, invariants, ms) => {
    console.log(`\n[${name}] ${(ms / 1000).toFixed(1)} s`)
    for (const result of invariants) console.log(format(result))
  }
})
const failed = results.filter((r) => !r.passed).length
console.log(`\n${results.length - failed} passed, ${failed} failed (${((Date.now() - started) / 1000).toFixed(1)} s)`)
process.exit(failed > 0 ? 1 : 0)

/**
 * What every stress scenario shares: the shape of an invariant's result,
 * the time budget that bounds every loop and wait, and small helpers.
 */
import { setFlagsFromString } from "node:v8"
import { runInNewContext } from "node:vm"

/** One checked property of a run, with the counts that prove it. */
export interface Invariant {
  readonly name: string
  readonly passed: boolean
  readonly counts: Record<string, number>
  readonly detail?: string
}

export const invariant = (
  name: string,
  passed: boolean,
  counts: Record<string, number>,
  detail?: string
): Invariant => detail === undefined || passed ? { name, passed, counts } : { name, passed, counts, detail }

export class BudgetExceeded extends Error {}

/**
 * A scenario's deadline. Loops test `expired` or call `check()`, and waits
 * take `timeout(ms)`, so a scenario that cannot finish fails with a message
 * saying where it was instead of hanging the run.
 */
export class Budget {
  readonly deadline: number

  constructor(readonly label: string, readonly ms: number) {
    this.deadline = Date.now() + ms
  }

  get expired() {
    return Date.now() >= this.deadline
  }

  remaining() {
    return Math.max(0, this.deadline - Date.now())
  }

  check(where: string) {
    if (this.expired) throw new BudgetExceeded(`${this.label} exceeded its ${this.ms} ms budget while ${where}`)
  }

  /** A wait of at most `ms`, and never past the deadline. */
  timeout(ms: number) {
    return Math.max(1, Math.min(ms, this.remaining()))
  }
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/** Polls `check` until it holds; false when the wait (bounded by the budget) ran out first. */
export const waitUntil = async (
  budget: Budget,
  timeoutMs: number,
  check: () => boolean | Promise<boolean>,
  intervalMs = 20
): Promise<boolean> => {
  const deadline = Date.now() + budget.timeout(timeoutMs)
  for (;;) {
    if (await check()) return true
    if (Date.now() >= deadline) return false
    await sleep(intervalMs)
  }
}

/** Runs `count` tasks with at most `width` in flight. */
export const pool = async (count: number, width: number, task: (index: number) => Promise<void>) => {
  let next = 0
  const worker = async () => {
    while (next < count) await task(next++)
  }
  await Promise.all(Array.from({ length: Math.min(width, count) }, worker))
}

/**
 * A full garbage collection: `global.gc` under `--expose-gc`, else the same function enabled at run
 * time (vitest workers start without the flag).
 */
const gc: () => void = (globalThis as { gc?: () => void }).gc ?? (() => {
  setFlagsFromString("--expose-gc")
  return runInNewContext("gc") as () => void
})()

/**
 * Heap in use after full collections: the least of a few samples a moment apart, each after several
 * collections with turns of the loop between (finalizers, weak refs, sockets closing), so that
 * garbage still in flight does not read as growth.
 */
export const settledHeap = async () => {
  let least = Number.POSITIVE_INFINITY
  for (let sample = 0; sample < 3; sample++) {
    await sleep(100)
    for (let i = 0; i < 4; i++) {
      gc()
      await new Promise((resolve) => setImmediate(resolve))
    }
    least = Math.min(least, process.memoryUsage().heapUsed)
  }
  return least
}

export const errorMessage = (error: unknown) => error instanceof Error ? error.message : String(error)

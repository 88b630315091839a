/**
 * The load generator: one process per workload and server, pinned by the
 * orchestrator to the core the server does not use. It reads its spec as
 * JSON from argv, drives the server's WebSocket and control ports, and
 * prints one result line. It always exits, at the latest at its deadline.
 *
 *   node --import tsx scripts/bench/load.ts '{"wsPort":…,"controlPort":…,"deadlineMs":…,"spec":{…}}'
 */
import { BENCH_USER, type CpuTimes, type PublishResult, RESULT_PREFIX, signToken, type StatsResult } from "./common.ts"
import { Pool } from "./pool.ts"
import * as Workloads from "./workloads.ts"

interface Input {
  readonly wsPort: number
  readonly controlPort: number
  readonly deadlineMs: number
  readonly spec: Workloads.LoadSpec
}

const input = JSON.parse(process.argv[2] ?? "{}") as Input
const result: Workloads.LoadResult = { metrics: {}, notes: [], details: {} }

const finish = (code: number) => {
  const cpu = process.cpuUsage()
  result.details.cpu_total_us = cpu.user + cpu.system
  process.stdout.write(`${RESULT_PREFIX}${JSON.stringify(result)}\n`, () => process.exit(code))
}

setTimeout(() => {
  result.notes.push(`load generator deadline of ${input.deadlineMs} ms reached`)
  finish(2)
}, input.deadlineMs)

const base = `http://127.0.0.1:${input.controlPort}`
const call = async <A>(method: string, path: string, body?: unknown): Promise<A> => {
  const response = await fetch(`${base}${path}`, {
    method,
    headers: { "content-type": "application/json" },
    ...(body === undefined ? {} : { body: JSON.stringify(body) })
  })
  const json = await response.json() as A
  if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${JSON.stringify(json)}`)
  return json
}

const control: Workloads.Control = {
  threads: (count) => call<{ thread_ids: Array<string> }>("POST", "/threads", { count }).then((r) => r.thread_ids),
  publish: (request) => call<PublishResult>("POST", "/publish", request),
  stats: () => call<StatsResult>("GET", "/stats"),
  cpu: () => call<CpuTimes>("GET", "/cpu")
}

try {
  const pool = new Pool(input.wsPort, await signToken(BENCH_USER))
  const env: Workloads.Env = { pool, control, result }
  const spec = input.spec
  switch (spec.workload) {
    case "memory":
      await Workloads.memory(env, spec)
      break
    case "fanout":
      await Workloads.fanout(env, spec)
      break
    case "latency":
      await Workloads.latency(env, spec)
      break
    case "connect":
      await Workloads.connect(env, spec)
      break
    case "replay":
      await Workloads.replay(env, spec)
      break
  }
  if (pool.errors.length > 0) result.notes.push(`connection errors: ${pool.errors.join("; ")}`)
  pool.dropAll()
  finish(0)
} catch (error) {
  result.notes.push(`failed: ${error instanceof Error ? error.stack ?? error.message : String(error)}`)
  finish(1)
}

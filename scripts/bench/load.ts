/**
 * The load generator: one process per workload and server, pinned by the
 * orchestrator to the core the server does not use. It reads its spec as
 * JSON from argv, drives the server's WebSocket and control ports, and
 * prints one result line. It always exits, at the latest at its deadline.
 *
 *   node --import tsx scripts/bench/load.ts '{"wsPort":…,"controlPort":…,"deadlineMs":…,"spec":{…}}'
 *
 * With `receiverControlPort` (the `nodes` workload on two nodes) the
 * clients are on one server and the events are published on another.
 */
import { agent } from "./agentload.ts"
import {
  BENCH_USER,
  type CpuTimes,
  type GcTotals,
  type PublishResult,
  RESULT_PREFIX,
  signToken,
  type StatsResult
} from "./common.ts"
import { Pool } from "./pool.ts"
import type { LoadPorts } from "./processes.ts"
import * as Workloads from "./workloads.ts"

interface Input extends LoadPorts {
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

/** The control channel of the server at `port`. */
const controlAt = (port: number): Workloads.Control => {
  const call = async <A>(method: string, path: string, body?: unknown): Promise<A> => {
    const response = await fetch(`http://127.0.0.1:${port}${path}`, {
      method,
      headers: { "content-type": "application/json" },
      ...(body === undefined ? {} : { body: JSON.stringify(body) })
    })
    const json = await response.json() as A
    if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${JSON.stringify(json)}`)
    return json
  }
  return {
    threads: (count) => call<{ thread_ids: Array<string> }>("POST", "/threads", { count }).then((r) => r.thread_ids),
    publish: (request) => call<PublishResult>("POST", "/publish", request),
    stats: () => call<StatsResult>("GET", "/stats"),
    cpu: () => call<CpuTimes>("GET", "/cpu"),
    gcTotals: () => call<GcTotals>("GET", "/gc-totals")
  }
}

try {
  const pool = new Pool(input.wsPort, await signToken(BENCH_USER), input.protocol)
  const control = controlAt(input.controlPort)
  const env: Workloads.Env = {
    pool,
    control,
    result,
    ...(input.receiverControlPort === undefined ? {} : { receiver: controlAt(input.receiverControlPort) })
  }
  const spec = input.spec
  const gcDone = await Workloads.gcMeter(env)
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
    case "nodes":
      await Workloads.nodes(env, spec)
      break
    case "agent":
      await agent(env, spec)
      break
  }
  await gcDone()
  if (pool.errors.length > 0) result.notes.push(`connection errors: ${pool.errors.join("; ")}`)
  pool.dropAll()
  finish(0)
} catch (error) {
  result.notes.push(`failed: ${error instanceof Error ? error.stack ?? error.message : String(error)}`)
  finish(1)
}

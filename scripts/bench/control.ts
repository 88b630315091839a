/**
 * The control endpoints both benchmark servers expose on a second loopback
 * port, so the load generator drives agent-chat and the raw `ws` baseline
 * with the same harness: the same synthetic events, the same publisher
 * (burst in chunks, or open loop at a fixed rate) and the same statistics.
 */
import { randomUUID } from "node:crypto"
import { writeFileSync } from "node:fs"
import { createServer, type IncomingMessage, type ServerResponse } from "node:http"
import { Session } from "node:inspector"
import type { AddressInfo } from "node:net"
import { constants, PerformanceObserver } from "node:perf_hooks"
import { setImmediate as yieldToLoop } from "node:timers/promises"
import type { EventType, StoredEvent } from "../../src/protocol/Events.ts"
import {
  eventData,
  type EventSize,
  type GcTotals,
  now,
  type PublishRequest,
  type PublishResult,
  READY_PREFIX,
  type ServerKind,
  type StatsResult
} from "./common.ts"

export interface Draft {
  readonly event_type: EventType
  readonly data: unknown
}

/** What a benchmark server must provide; everything else is this module's. */
export interface BenchTarget {
  readonly kind: ServerKind
  readonly wsPort: number
  readonly runId: string
  readonly store: string
  readonly createThreads: (count: number) => Promise<ReadonlyArray<string>>
  readonly head: (threadId: string) => Promise<number>
  /** Delivers events live to the connections that joined their threads. */
  readonly publish: (events: ReadonlyArray<StoredEvent>) => Promise<void>
  /** Appends to the thread's log and delivers the events live, like `publish`; they carry their seqs. */
  readonly append: (threadId: string, drafts: ReadonlyArray<Draft>) => Promise<ReadonlyArray<StoredEvent>>
  readonly hubStats: () => Promise<StatsResult["hub"]>
}

/** The stored events of one append to a thread's log whose next seq is `first`: what the in-memory servers keep. */
export const storedEvents = (
  runId: string,
  threadId: string,
  first: number,
  drafts: ReadonlyArray<Draft>
): Array<StoredEvent> => {
  const timestamp = new Date().toISOString()
  return drafts.map((d, i): StoredEvent => ({
    event_id: randomUUID(),
    thread_id: threadId,
    run_id: runId,
    seq: first + i,
    timestamp,
    event_type: d.event_type,
    data: d.data
  }))
}

/** Events per publish, or per append when stored. */
const BURST_CHUNK = 100
const MAX_EVENTS = 5_000_000
const RSS_SETTLE_MS = 250

const gc = (globalThis as { gc?: () => void }).gc

export const collectGarbage = async () => {
  if (gc === undefined) return
  gc()
  await yieldToLoop()
  gc()
}

/** Counts the process's garbage collections and adds up their pauses, leaving out the ones `gc()` forced. */
const observeGc = () => {
  const totals = { count: 0, pause_ms: 0, major: 0, minor: 0 }
  new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      const detail = (entry as { readonly detail?: { readonly flags?: number; readonly kind?: number } }).detail
      if (((detail?.flags ?? 0) & constants.NODE_PERFORMANCE_GC_FLAGS_FORCED) !== 0) continue
      totals.count++
      totals.pause_ms += entry.duration
      if (detail?.kind === constants.NODE_PERFORMANCE_GC_MAJOR) totals.major++
      else if (detail?.kind === constants.NODE_PERFORMANCE_GC_MINOR) totals.minor++
    }
  }).observe({ entryTypes: ["gc"] })
  return (): GcTotals => ({ ...totals })
}

export const startControl = async (target: BenchTarget) => {
  const gcTotals = observeGc()
  const lastSeq = new Map<string, number>()

  const prepare = async (ids: ReadonlyArray<string>) => {
    for (const id of ids) if (!lastSeq.has(id)) lastSeq.set(id, await target.head(id))
  }

  /** Contiguous seqs continuing from the thread's head, so joined connections accept them as live. */
  const nextSeq = (threadId: string) => {
    const seq = lastSeq.get(threadId)! + 1
    lastSeq.set(threadId, seq)
    return seq
  }

  const makeEvent = (threadId: string, seq: number, size: EventSize, t: number): StoredEvent => {
    const { data, type } = eventData(size, t)
    return {
      event_id: randomUUID(),
      thread_id: threadId,
      run_id: target.runId,
      seq,
      timestamp: new Date().toISOString(),
      event_type: type as EventType,
      data
    }
  }

  /**
   * One batch of synthetic events, each with the time it was due: published straight to the hub with the
   * thread's next seqs, or (`store`) appended to the log, one append per thread, which delivers them once
   * committed.
   */
  const emit = (request: PublishRequest, due: ReadonlyArray<readonly [threadId: string, t: number]>) => {
    if (request.store !== true) {
      return target.publish(due.map(([threadId, t]) => makeEvent(threadId, nextSeq(threadId), request.size, t)))
    }
    const byThread = new Map<string, Array<Draft>>()
    for (const [threadId, t] of due) {
      const { data, type } = eventData(request.size, t)
      const drafts = byThread.get(threadId)
      const draft: Draft = { event_type: type as EventType, data }
      if (drafts === undefined) byThread.set(threadId, [draft])
      else drafts.push(draft)
    }
    return Promise.all(Array.from(byThread, ([threadId, drafts]) => target.append(threadId, drafts)))
  }

  /** As fast as the server takes them, in chunks: stored thread by thread, as one run appends its events. */
  const burst = async (request: PublishRequest) => {
    const ids = request.thread_ids
    const chunk = (count: number, threadOf: (j: number) => string) =>
      emit(request, Array.from({ length: count }, (_, j) => [threadOf(j), now()] as const))
    if (request.store === true) {
      const perThread = Math.ceil(request.count / ids.length)
      for (const threadId of ids) {
        for (let done = 0; done < perThread; done += BURST_CHUNK) {
          await chunk(Math.min(BURST_CHUNK, perThread - done), () => threadId)
        }
      }
      return
    }
    for (let i = 0; i < request.count; i += BURST_CHUNK) {
      await chunk(Math.min(BURST_CHUNK, request.count - i), (j) => ids[(i + j) % ids.length]!)
      await yieldToLoop()
    }
  }

  /** Open loop: event i is due at start + i / rate and carries that time, whenever it actually goes out. */
  const rated = async (request: PublishRequest, rate: number) => {
    const ids = request.thread_ids
    const interval = 1000 / rate
    const start = now()
    const giveUp = start + request.count * interval + 60_000
    const sent: Array<Promise<unknown>> = []
    let failed = 0
    let i = 0
    let maxLag = 0
    await new Promise<void>((resolve) => {
      const tick = () => {
        const t = now()
        const due = Math.min(request.count, Math.floor((t - start) / interval) + 1)
        if (due > i) {
          maxLag = Math.max(maxLag, t - (start + i * interval))
          const batch: Array<readonly [string, number]> = []
          for (; i < due; i++) batch.push([ids[i % ids.length]!, start + i * interval])
          sent.push(emit(request, batch).catch(() => failed++))
        }
        if (i >= request.count || t > giveUp) resolve()
        else setTimeout(tick, 1)
      }
      tick()
    })
    await Promise.all(sent)
    return { published: i, maxLag, failed }
  }

  const publish = async (request: PublishRequest): Promise<PublishResult> => {
    if (request.thread_ids.length === 0 || !(request.count > 0 && request.count <= MAX_EVENTS)) {
      throw new Error("publish needs thread_ids and 0 < count <= 5e6")
    }
    if (request.store !== true) await prepare(request.thread_ids)
    const cpuBefore = process.cpuUsage()
    const startedAt = now()
    let published = request.count
    let maxLag = 0
    let failed = 0
    if (request.mode === "rate") {
      const rate = request.rate ?? 0
      if (!(rate > 0)) throw new Error("rate mode needs a positive rate")
      ;({ failed, maxLag, published } = await rated(request, rate))
    } else await burst(request)
    // The log gave these seqs: a later publish straight to the hub reads the head again.
    if (request.store === true) { for (const id of request.thread_ids) lastSeq.delete(id) }
    const endedAt = now()
    return {
      published,
      cpu_before: cpuBefore,
      cpu_after: process.cpuUsage(),
      started_at: startedAt,
      ended_at: endedAt,
      max_lag_ms: maxLag,
      failed
    }
  }

  const stats = async (): Promise<StatsResult> => {
    const cpu = process.cpuUsage()
    await collectGarbage()
    // V8 returns freed pages to the system on background threads: RSS read at once still counts them.
    await new Promise((resolve) => setTimeout(resolve, RSS_SETTLE_MS))
    return { cpu, memory: process.memoryUsage(), hub: await target.hubStats() }
  }

  /**
   * Where the server allocates, for profiling by hand: POST /heap-profile/start samples every allocation
   * (those the GC collected since included), POST /heap-profile/stop writes the sampling profile to the
   * file `path` of the body (open it in Chrome's DevTools, Memory tab). Not used by the workloads.
   */
  let inspector: Session | undefined
  const post = (method: string, params: object = {}) =>
    new Promise<any>((resolve, reject) =>
      inspector!.post(method, params, (error, result) => error ? reject(error) : resolve(result))
    )
  const heapProfile = async (action: string, body: any) => {
    if (action === "start") {
      inspector ??= new Session()
      inspector.connect()
      await post("HeapProfiler.enable")
      await post("HeapProfiler.startSampling", {
        samplingInterval: 16_384,
        includeObjectsCollectedByMajorGC: true,
        includeObjectsCollectedByMinorGC: true
      })
      return { started: true }
    }
    const { profile } = await post("HeapProfiler.stopSampling")
    writeFileSync(String(body.path), JSON.stringify(profile))
    inspector?.disconnect()
    return { written: String(body.path) }
  }

  const route = async (method: string, path: string, body: any): Promise<unknown> => {
    if (method === "POST" && path.startsWith("/heap-profile/")) return heapProfile(path.slice(14), body)
    if (method === "GET" && path === "/stats") return stats()
    if (method === "GET" && path === "/cpu") return process.cpuUsage()
    if (method === "GET" && path === "/gc-totals") return gcTotals()
    if (method === "POST" && path === "/gc") return collectGarbage().then(() => process.memoryUsage())
    if (method === "POST" && path === "/threads") {
      return { thread_ids: await target.createThreads(Math.min(100_000, Math.max(1, Number(body.count ?? 1)))) }
    }
    if (method === "POST" && path === "/publish") return publish(body as PublishRequest)
    return undefined
  }

  const handle = (request: IncomingMessage, response: ServerResponse) => {
    let text = ""
    request.on("data", (chunk: Buffer) => text += chunk.toString())
    request.on("end", () => {
      const reply = (status: number, value: unknown) => {
        response.writeHead(status, { "content-type": "application/json" })
        response.end(JSON.stringify(value))
      }
      Promise.resolve()
        .then(() => route(request.method ?? "GET", request.url ?? "/", text.length > 0 ? JSON.parse(text) : {}))
        .then(
          (value) => value === undefined ? reply(404, { error: "not_found" }) : reply(200, value),
          (error: unknown) => reply(500, { error: String(error) })
        )
    })
  }

  const server = createServer(handle)
  server.requestTimeout = 0
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  const controlPort = (server.address() as AddressInfo).port
  process.stdout.write(
    `${READY_PREFIX}${
      JSON.stringify({ kind: target.kind, wsPort: target.wsPort, controlPort, pid: process.pid, store: target.store })
    }\n`
  )
  return server
}

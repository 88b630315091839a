/**
 * The control target of the servers that keep their threads in memory (raw
 * ws and Socket.IO): each event encoded once, as the server sends it, kept
 * in the thread's log when stored, and handed to the server to deliver to
 * the thread's connections.
 */
import { randomUUID } from "node:crypto"
import type { StoredEvent } from "../../src/protocol/Events.ts"
import type { ServerKind, StatsResult } from "./common.ts"
import { type BenchTarget, storedEvents } from "./control.ts"

export interface MemoryThread<M> {
  head: number
  /** The encoded events, seq n at index n - 1. */
  readonly log: Array<M>
}

export const memoryTarget = <M, T extends MemoryThread<M>>(options: {
  readonly kind: ServerKind
  readonly wsPort: number
  readonly store: string
  readonly threads: Map<string, T>
  readonly newThread: () => T
  readonly encode: (event: StoredEvent) => M
  readonly deliver: (threadId: string, thread: T, message: M) => void
  readonly hubStats: () => StatsResult["hub"]
}): BenchTarget => {
  const { deliver, encode, threads } = options
  const runId = randomUUID()
  return {
    kind: options.kind,
    wsPort: options.wsPort,
    runId,
    store: options.store,
    createThreads: (count) => {
      const ids = Array.from({ length: count }, () => randomUUID())
      for (const id of ids) threads.set(id, options.newThread())
      return Promise.resolve(ids)
    },
    head: (threadId) => Promise.resolve(threads.get(threadId)?.head ?? 0),
    publish: (events) => {
      for (const event of events) {
        const thread = threads.get(event.thread_id)
        if (thread === undefined) continue
        thread.head = Math.max(thread.head, event.seq)
        deliver(event.thread_id, thread, encode(event))
      }
      return Promise.resolve()
    },
    append: (threadId, drafts) => {
      const thread = threads.get(threadId)
      if (thread === undefined) return Promise.reject(new Error(`no thread ${threadId}`))
      const events = storedEvents(runId, threadId, thread.log.length + 1, drafts)
      for (const event of events) {
        const message = encode(event)
        thread.log.push(message)
        thread.head = event.seq
        deliver(threadId, thread, message)
      }
      return Promise.resolve(events)
    },
    hubStats: () => Promise.resolve(options.hubStats())
  }
}

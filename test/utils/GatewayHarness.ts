/**
 * The gateway core on its own: the real Hub over the real EventLog, the
 * in-memory event store and the in-process broker, with a fake Access the
 * test controls (who may read which thread, and how slow reads are). No
 * `ws`, no database, no HTTP server; clients are FakeSockets.
 */
import { type Context, Effect, ExecutionStrategy, Exit, Layer, Option, Scope } from "effect"
import { randomUUID } from "node:crypto"
import type { Principal } from "../../src/auth/Auth.ts"
import { AppConfig, type AppConfigShape, AppConfigTest } from "../../src/config/AppConfig.ts"
import { RequestError } from "../../src/domain/Errors.ts"
import { Broker, BrokerInProcess } from "../../src/eventlog/Broker.ts"
import { EventLog, EventLogLive } from "../../src/eventlog/EventLog.ts"
import { EventStore } from "../../src/eventlog/EventStore.ts"
import { makeMemoryStore, type MemoryStore } from "../../src/eventlog/MemoryEventStore.ts"
import type { Connection } from "../../src/gateway/Connection.ts"
import { Hub, HubLive } from "../../src/gateway/Hub.ts"
import { draft, type StoredEvent } from "../../src/protocol/Events.ts"
import { Access } from "../../src/threads/Access.ts"
import { FakeSocket, pause } from "./FakeSocket.ts"

export const principal = (userId: string): Principal => ({ userId, expiresAt: Option.none() })

export interface Client {
  readonly socket: FakeSocket
  readonly connection: Connection
  /** The registration's scope; the socket closing releases it, as a session does. */
  readonly scope: Scope.CloseableScope
}

export const message = (content: string, userId = "alice") =>
  draft("message_created", null, { message_id: randomUUID(), user_id: userId, content })

/** Builds the hub and its event log in the current scope; `overrides` go to AppConfigTest. */
export const makeHubEnv = (overrides: Partial<AppConfigShape> = {}) =>
  Effect.gen(function*() {
    const memory: MemoryStore = yield* makeMemoryStore
    const members = new Map<string, Set<string>>()
    // Real-time delays, so a test can widen the windows where live events race a join.
    const slow = { ms: 0 }
    const delay = Effect.suspend(() => slow.ms > 0 ? pause(slow.ms) : Effect.void)
    // Closed, every Access.read waits: a request stuck on the database.
    const reads = yield* Effect.makeLatch(true)
    // Closed, the head has been read but the answer has not come back yet (the database's round trip).
    const answers = yield* Effect.makeLatch(true)
    // Reads that got past the latch: a request interrupted while it waited never counts.
    const readsPassed = { count: 0 }

    const store = EventStore.of({
      ...memory.store,
      read: (threadId, afterSeq, limit) => Effect.zipRight(delay, memory.store.read(threadId, afterSeq, limit))
    })
    const isMember = (userId: string, threadId: string) => members.get(threadId)?.has(userId) === true
    const access = Access.of({
      read: (who, threadId) =>
        Effect.gen(function*() {
          yield* reads.await
          readsPassed.count++
          yield* delay
          if (!isMember(who.userId, threadId)) return yield* Effect.fail(RequestError.notFound("thread"))
          const head = yield* memory.store.head(threadId)
          yield* answers.await
          return yield* Option.match(head, {
            onNone: () => Effect.fail(RequestError.notFound("thread")),
            onSome: Effect.succeed
          })
        }),
      write: (who, threadId) =>
        isMember(who.userId, threadId) ? Effect.void : Effect.fail(RequestError.notFound("thread")),
      changeMembers: () => Effect.void,
      membersOf: (threadIds) => Effect.succeed(new Map(threadIds.map((id) => [id, [...members.get(id) ?? []].sort()])))
    })

    const config = AppConfigTest(overrides)
    const eventLog = EventLogLive.pipe(
      Layer.provide(Layer.succeed(EventStore, store)),
      Layer.provideMerge(BrokerInProcess),
      Layer.provide(config)
    )
    const context: Context.Context<Hub | EventLog | Access | AppConfig | Broker> = yield* HubLive.pipe(
      Layer.provideMerge(eventLog),
      Layer.provideMerge(Layer.succeed(Access, access)),
      Layer.provideMerge(config),
      Layer.build
    )
    const hub = yield* Effect.provide(Hub, context)
    const log = yield* Effect.provide(EventLog, context)

    const thread = (threadId: string, users: ReadonlyArray<string>) => {
      memory.createThread(threadId)
      members.set(threadId, new Set(users))
    }

    /** Registers a client in a scope of its own (a child of the test's), released when its socket closes. */
    const connect = (userId: string) =>
      Effect.gen(function*() {
        const socket = new FakeSocket()
        const scope = yield* Scope.fork(yield* Effect.scope, ExecutionStrategy.sequential)
        const connection = yield* Scope.extend(hub.register(socket, principal(userId)), scope)
        socket.onClosed = () => Effect.runFork(Scope.close(scope, Exit.void))
        return { socket, connection, scope } satisfies Client
      })

    /** Appends `count` messages in one append: consecutive seqs, published together. */
    const post = (threadId: string, count = 1) =>
      log.append(threadId, Array.from({ length: count }, (_, i) => message(`m${i}`))).pipe(Effect.orDie)

    /** Stores the thread's next event without publishing it: a live event that never arrives. */
    const storeUnpublished = (threadId: string) =>
      memory.store.transaction(Effect.gen(function*() {
        const first = yield* memory.store.allocate(threadId, 1)
        const event: StoredEvent = {
          event_id: randomUUID(),
          thread_id: threadId,
          seq: Option.getOrThrow(first),
          timestamp: new Date().toISOString(),
          ...message("never published")
        }
        yield* memory.store.insertEvents([event])
        return event
      })).pipe(Effect.orDie)

    return {
      hub,
      log,
      memory,
      members,
      slow,
      reads,
      answers,
      readsPassed,
      context,
      thread,
      connect,
      post,
      storeUnpublished
    } as const
  })

export type HubEnv = Effect.Effect.Success<ReturnType<typeof makeHubEnv>>

/** 1..n, or from..to: the seqs a client should have received. */
export const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i)

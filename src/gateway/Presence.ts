/**
 * Presence: who of each joined thread's members holds a connection on any
 * node (docs/PROTOCOL.md, `presence`). This node counts its users'
 * connections and tells the broker's presence store when a user comes or
 * goes, renewing its holds within the TTL; the store's announcements, a
 * `members_changed`, and a sweep every quarter of the TTL (which notices a
 * crashed node's users running out) make it work out a thread's online
 * members again, and each joined connection gets a `presence` frame when
 * they differ from what it was last told. Ephemeral: never stored.
 */
import { Chunk, Duration, Effect, Queue, Schedule } from "effect"
import { AppConfig } from "../config/AppConfig.ts"
import { Broker } from "../eventlog/Broker.ts"
import * as Frames from "../protocol/ServerFrames.ts"
import { Access } from "../threads/Access.ts"
import type { Connection } from "./Connection.ts"

/** What a node knows of a thread some of its connections joined. */
interface Watched {
  members: ReadonlyArray<string>
  online: ReadonlyArray<string>
}

type Work =
  | { readonly _tag: "users"; readonly users: ReadonlyArray<string> }
  | { readonly _tag: "members"; readonly threadId: string }
  | { readonly _tag: "sweep" }

/** Rows per renewal statement or pipeline. */
const CHUNK = 500

const chunks = <A>(items: ReadonlyArray<A>) =>
  Array.from({ length: Math.ceil(items.length / CHUNK) }, (_, i) => items.slice(i * CHUNK, (i + 1) * CHUNK))

const same = (a: ReadonlyArray<string> | undefined, b: ReadonlyArray<string>) =>
  a !== undefined && a.length === b.length && a.every((user, i) => user === b[i])

export const makePresence = (byThread: ReadonlyMap<string, ReadonlySet<Connection>>) =>
  Effect.gen(function*() {
    const config = yield* AppConfig
    const store = (yield* Broker).presence
    const access = yield* Access
    /** Connections per user on this node. */
    const local = new Map<string, number>()
    /** Users the store was told this node holds. */
    const told = new Set<string>()
    const watched = new Map<string, Watched>()
    const changed = yield* Queue.unbounded<string>()
    const work = yield* Queue.unbounded<Work>()

    const logFailure = (what: string) => (error: { readonly reason: string }) =>
      Effect.logWarning(what).pipe(Effect.annotateLogs({ component: "presence", reason: error.reason }))

    /** The members online: the store's answer, and this node's own users whatever it says. */
    const onlineAmong = (members: ReadonlyArray<string>, stored: ReadonlySet<string>) =>
      members.filter((user) => stored.has(user) || local.has(user)).sort()

    /** Tells each joined connection that was told something else. */
    const tell = (threadId: string, online: ReadonlyArray<string>) => {
      let frame: string | undefined
      for (const connection of byThread.get(threadId) ?? []) {
        const cursor = connection.threads.get(threadId)
        if (cursor?.online === undefined || same(cursor.online, online) || connection.isLeaving) continue
        cursor.online = online
        connection.push(frame ??= Frames.presence(threadId, online))
      }
    }

    /** Works out the online members of these watched threads again; keeps what it knew if the store fails. */
    const refresh = (threadIds: ReadonlyArray<string>) =>
      Effect.gen(function*() {
        const users = new Set<string>()
        for (const id of threadIds) for (const user of watched.get(id)?.members ?? []) users.add(user)
        const stored = new Set<string>()
        for (const part of chunks([...users])) for (const user of yield* store.online(part)) stored.add(user)
        for (const id of threadIds) {
          const entry = watched.get(id)
          if (entry === undefined) continue
          entry.online = onlineAmong(entry.members, stored)
          tell(id, entry.online)
        }
      }).pipe(Effect.catchAll(logFailure("presence could not be read; keeping what was known")))

    const reloadMembers = (threadIds: ReadonlyArray<string>) =>
      Effect.forEach(chunks(threadIds), (part) =>
        Effect.map(access.membersOf(part), (members) => {
          for (const [id, list] of members) {
            const entry = watched.get(id)
            if (entry !== undefined) entry.members = [...list].sort()
          }
        }), { discard: true })

    const threadsOf = (users: ReadonlyArray<string>) => {
      const wanted = new Set(users)
      const ids: Array<string> = []
      for (const [id, entry] of watched) if (entry.members.some((user) => wanted.has(user))) ids.push(id)
      return ids
    }

    const handle = (batch: ReadonlyArray<Work>) =>
      Effect.gen(function*() {
        const users: Array<string> = []
        const members = new Set<string>()
        let sweep = false
        for (const item of batch) {
          if (item._tag === "users") users.push(...item.users)
          else if (item._tag === "members") members.add(item.threadId)
          else sweep = true
        }
        if (sweep) {
          for (const id of watched.keys()) if (!byThread.has(id)) watched.delete(id)
          yield* reloadMembers([...watched.keys()])
          return yield* refresh([...watched.keys()])
        }
        yield* reloadMembers([...members])
        yield* refresh([...new Set([...members, ...threadsOf(users)])])
      }).pipe(Effect.catchAll(logFailure("presence could not be worked out")))

    yield* Queue.takeBetween(work, 1, Number.MAX_SAFE_INTEGER).pipe(
      Effect.flatMap((batch) => handle(Chunk.toReadonlyArray(batch))),
      Effect.forever,
      Effect.forkScoped
    )

    // This node's comings and goings, written to the store in order, then announced.
    yield* Queue.takeBetween(changed, 1, Number.MAX_SAFE_INTEGER).pipe(
      Effect.flatMap((batch) => {
        const users = [...new Set(batch)]
        const held = users.filter((user) => local.has(user))
        const released = users.filter((user) => !local.has(user))
        return store.hold(held, released).pipe(
          Effect.tap(() =>
            Effect.sync(() => {
              for (const user of held) told.add(user)
              for (const user of released) told.delete(user)
            })
          ),
          Effect.catchAll(logFailure("presence could not be written; the renewal tries again")),
          Effect.zipRight(store.announce(users))
        )
      }),
      Effect.forever,
      Effect.forkScoped
    )

    const ttl = Duration.toMillis(config.presenceTtl)
    const renew = Effect.forEach(chunks([...local.keys()]), (part) =>
      store.hold(part, []).pipe(Effect.tap(() => Effect.sync(() => part.forEach((user) => told.add(user))))), {
      discard: true
    }).pipe(Effect.catchAll(logFailure("presence could not be renewed")))
    yield* renew.pipe(Effect.repeat(Schedule.spaced(Duration.millis(ttl / 3))), Effect.forkScoped)
    yield* Queue.offer(work, { _tag: "sweep" }).pipe(
      Effect.repeat(Schedule.spaced(Duration.millis(ttl / 4))),
      Effect.delay(Duration.millis(ttl / 4)),
      Effect.forkScoped
    )
    // A node that stops in order lets its users go at once rather than after the TTL.
    yield* Effect.addFinalizer(() =>
      Effect.suspend(() => {
        const users = [...new Set([...told, ...local.keys()])]
        return store.hold([], users).pipe(
          Effect.zipRight(store.announce(users)),
          Effect.ignore,
          Effect.timeout(Duration.seconds(2)),
          Effect.ignore
        )
      })
    )

    /** The online members of a thread the user may read, as its join's ack says; watched from now on. */
    const join = (threadId: string, userId: string) =>
      Effect.gen(function*() {
        const known = watched.get(threadId)
        if (known !== undefined && known.members.includes(userId)) {
          return
        }
        const members = [...(yield* access.membersOf([threadId])).get(threadId) ?? []].sort()
        const stored = yield* store.online(members).pipe(
          Effect.catchAll((error) =>
            Effect.as(
              logFailure("presence could not be read; answering with this node's users")(error),
              new Set<string>() as ReadonlySet<string>
            )
          )
        )
        watched.set(threadId, { members, online: onlineAmong(members, stored) })
      })

    /** The ack's `online`, read as it is sent: from then on the connection is told every change. */
    const acknowledge = (connection: Connection, threadId: string) => {
      const known = watched.get(threadId)?.online ?? []
      // The joining user is online, whether or not the store has heard of him yet.
      const online = known.includes(connection.userId) ? known : [...known, connection.userId].sort()
      const cursor = connection.threads.get(threadId)
      if (cursor !== undefined) {
        cursor.online = online
      }
      return online
    }

    return {
      join,
      acknowledge,
      connected: (userId: string) => {
        const held = local.get(userId) ?? 0
        local.set(userId, held + 1)
        if (held === 0) {
          Queue.unsafeOffer(changed, userId)
        }
      },
      disconnected: (userId: string) => {
        const held = (local.get(userId) ?? 1) - 1
        if (held > 0) {
          return local.set(userId, held)
        }
        local.delete(userId)
        Queue.unsafeOffer(changed, userId)
      },
      connectionsOf: (userId: string) =>
        local.get(userId) ?? 0,
      users: () =>
        local.size,
      /** The store says these users came or went somewhere. */
      announced: (users: ReadonlyArray<string>) => Queue.unsafeOffer(work, { _tag: "users", users }),
      membersChanged: (threadId: string) => Queue.unsafeOffer(work, { _tag: "members", threadId })
    } as const
  })

export type Presence = Effect.Effect.Success<ReturnType<typeof makePresence>>

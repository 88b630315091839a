import { expect, layer } from "@effect/vitest"
import { Effect, Layer, Option } from "effect"
import { Threads } from "../../src/threads/Threads.ts"
import { allTestDatabases } from "../utils/TestDatabase.ts"

for (const database of allTestDatabases()) {
  layer(Threads.Default.pipe(Layer.provide(database.layer)), { excludeTestServices: true, timeout: 60_000 })(
    `Threads repository on ${database.name}`,
    (it) => {
      it.effect("creates a thread with its creator and members, visible to them only", () =>
        Effect.gen(function*() {
          const threads = yield* Threads
          const id = yield* threads.create({ createdBy: "ann", title: "plans", members: ["ben", "ann"] })
          expect(yield* threads.membership(id, "ann", false)).toEqual(Option.some({ createdBy: "ann", headSeq: 0 }))
          expect(Option.isSome(yield* threads.membership(id, "ben", false))).toBe(true)
          expect(yield* threads.membership(id, "cid", false)).toEqual(Option.none())
          expect(yield* threads.membership("missing", "ann", false)).toEqual(Option.none())
          const listed = yield* threads.listForUser("ben")
          expect(listed.find((t) => t.thread_id === id)).toMatchObject({ title: "plans", head_seq: 0 })
          expect((yield* threads.listForUser("cid")).some((t) => t.thread_id === id)).toBe(false)
          expect(yield* threads.describe(id)).toEqual(Option.some(expect.objectContaining({
            thread_id: id,
            created_by: "ann",
            members: ["ann", "ben"]
          })))
          expect(yield* threads.describe("missing")).toEqual(Option.none())
        }))

      it.effect("adds and removes members, reporting only what changed", () =>
        Effect.gen(function*() {
          const threads = yield* Threads
          const id = yield* threads.create({ createdBy: "ann", title: null, members: ["ben"] })
          expect(yield* threads.addMembers(id, ["cid", "ben", "cid", "dan"])).toEqual(["cid", "dan"])
          expect(yield* threads.memberCount(id)).toBe(4)
          expect(yield* threads.removeMembers(id, ["ben", "eve"])).toEqual(["ben"])
          expect(yield* threads.removeMembers(id, ["ben"])).toEqual([])
          expect(Option.map(yield* threads.describe(id), (d) => d.members)).toEqual(Option.some(["ann", "cid", "dan"]))
        }))

      it.effect("searches earlier messages by every word, case-insensitively, excluding the asking message", () =>
        Effect.gen(function*() {
          const threads = yield* Threads
          const thread = yield* threads.create({ createdBy: "ann", title: null, members: [] })
          const ids: Array<string> = []
          for (const content of ["The Blue car is fast", "a blue boat", "red car 100%", "what about the blue car?"]) {
            ids.push(yield* threads.insertMessage({ threadId: thread, userId: "ann", content }))
          }
          const found = yield* threads.searchMessages({
            threadId: thread,
            terms: ["blue", "car"],
            excludeMessageId: ids[3]!,
            limit: 5
          })
          expect(found.map((m) => m.content)).toEqual(["The Blue car is fast"])
          const literal = yield* threads.searchMessages({
            threadId: thread,
            terms: ["100%"],
            excludeMessageId: ids[3]!,
            limit: 5
          })
          expect(literal.map((m) => m.content)).toEqual(["red car 100%"])
        }))
    }
  )
}

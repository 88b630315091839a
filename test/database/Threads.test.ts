import { expect, layer } from "@effect/vitest"
import { Effect, Layer, Option } from "effect"
import { Threads } from "../../src/database/Threads.ts"
import { draft } from "../../src/domain/Events.ts"
import { allTestDatabases } from "../utils/TestDatabase.ts"

const message = (content: string) => draft("agent_thinking", null, { text: content })

for (const database of allTestDatabases()) {
  layer(Threads.Default.pipe(Layer.provide(database.layer)), { excludeTestServices: true, timeout: 60_000 })(
    `Threads repository on ${database.name}`,
    (it) => {
      it.effect("creates a thread with its creator and members, visible to them only", () =>
        Effect.gen(function*() {
          const threads = yield* Threads
          const id = yield* threads.create({ createdBy: "ann", title: "plans", members: ["ben", "ann"] })
          expect(yield* threads.isMember(id, "ann")).toBe(true)
          expect(yield* threads.isMember(id, "ben")).toBe(true)
          expect(yield* threads.isMember(id, "cid")).toBe(false)
          const listed = yield* threads.listForUser("ben")
          expect(listed.find((t) => t.thread_id === id)).toMatchObject({ title: "plans", head_seq: 0 })
          expect((yield* threads.listForUser("cid")).some((t) => t.thread_id === id)).toBe(false)
          expect(yield* threads.headSeq(id)).toEqual(Option.some(0))
          expect(yield* threads.headSeq("missing")).toEqual(Option.none())
        }))

      it.effect("gives concurrent appends distinct, gapless seqs per thread", () =>
        Effect.gen(function*() {
          const threads = yield* Threads
          const a = yield* threads.create({ createdBy: "ann", title: null, members: [] })
          const b = yield* threads.create({ createdBy: "ann", title: null, members: [] })
          const appended = yield* Effect.forEach(
            Array.from({ length: 40 }, (_, i) => i),
            (i) => threads.append(i % 2 === 0 ? a : b, [message(`m${i}`), message(`n${i}`)]),
            { concurrency: 8 }
          )
          expect(appended.flat()).toHaveLength(80)
          for (const thread of [a, b]) {
            const events = yield* threads.eventsAfter(thread, 0, 1000)
            expect(events.map((e) => e.seq)).toEqual(Array.from({ length: 40 }, (_, i) => i + 1))
            expect(yield* threads.headSeq(thread)).toEqual(Option.some(40))
            expect(new Set(events.map((e) => e.event_id)).size).toBe(40)
          }
          const page = yield* threads.eventsAfter(a, 10, 5)
          expect(page.map((e) => e.seq)).toEqual([11, 12, 13, 14, 15])
        }))

      it.effect("allows one running run per thread, and ends a run once", () =>
        Effect.gen(function*() {
          const threads = yield* Threads
          const thread = yield* threads.create({ createdBy: "ann", title: null, members: [] })
          const first = yield* threads.insertMessage({ threadId: thread, userId: "ann", content: "one" })
          const second = yield* threads.insertMessage({ threadId: thread, userId: "ann", content: "two" })
          const run = yield* threads.insertRun({ threadId: thread, messageId: first, agent: "a" })
          expect(Option.isSome(run)).toBe(true)
          expect(yield* threads.insertRun({ threadId: thread, messageId: second, agent: "a" })).toEqual(Option.none())
          expect(yield* threads.hasActiveRun(thread)).toBe(true)
          const runId = Option.getOrThrow(run)
          expect(yield* threads.finishRun(runId, "completed", null)).toBe(true)
          expect(yield* threads.finishRun(runId, "cancelled", "cancelled")).toBe(false)
          expect(yield* threads.findRun(runId)).toEqual(
            Option.some({ run_id: runId, thread_id: thread, status: "completed" })
          )
          expect(Option.isSome(yield* threads.insertRun({ threadId: thread, messageId: second, agent: "a" }))).toBe(
            true
          )
        }))

      it.effect("rolls back everything in a failed transaction", () =>
        Effect.gen(function*() {
          const threads = yield* Threads
          const thread = yield* threads.create({ createdBy: "ann", title: null, members: [] })
          const result = yield* threads.transaction(Effect.gen(function*() {
            yield* threads.insertMessage({ threadId: thread, userId: "ann", content: "lost" })
            yield* threads.append(thread, [message("lost")])
            return yield* Effect.fail("abort" as const)
          })).pipe(Effect.flip)
          expect(result).toBe("abort")
          expect(yield* threads.headSeq(thread)).toEqual(Option.some(0))
          expect(yield* threads.recentMessages(thread, 10)).toEqual([])
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
          const recent = yield* threads.recentMessages(thread, 2)
          expect(recent.map((m) => m.content)).toEqual(["red car 100%", "what about the blue car?"])
        }))
    }
  )
}

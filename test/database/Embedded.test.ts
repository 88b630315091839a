import { expect, layer } from "@effect/vitest"
import { Effect, Layer, Option } from "effect"
import { Threads } from "../../src/database/Threads.ts"
import { draft } from "../../src/domain/Events.ts"
import { EmbeddedTestDatabase } from "../utils/TestDatabase.ts"

// pglite-socket runs every client connection on one Postgres session and interleaves their protocol
// messages, so concurrent statements on several connections clobbered each other's unnamed statement.
layer(Threads.Default.pipe(Layer.provide(EmbeddedTestDatabase(4))), { excludeTestServices: true, timeout: 60_000 })(
  "embedded database",
  (it) => {
    it.effect("answers many concurrent queries of different shapes, each correctly", () =>
      Effect.gen(function*() {
        const threads = yield* Threads
        const id = yield* threads.create({ createdBy: "ann", title: null, members: ["ben"] })
        const answers = yield* Effect.forEach(
          Array.from({ length: 300 }, (_, i) => i),
          (i) =>
            i % 4 === 0
              ? Effect.map(
                threads.append(id, [draft("agent_thinking", null, { text: `t${i}` })]),
                (e) => e.length === 1
              )
              : i % 4 === 1
              ? Effect.map(threads.headSeq(id), (head) => Option.isSome(head))
              : i % 4 === 2
              ? threads.isMember(id, "ben")
              : Effect.map(threads.eventsAfter(id, 0, 10), (events) => events.length <= 10),
          { concurrency: 16 }
        )
        expect(answers.every((answer) => answer)).toBe(true)
      }))
  }
)

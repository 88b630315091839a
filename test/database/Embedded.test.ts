import { expect, layer } from "@effect/vitest"
import { Effect, Layer, Option } from "effect"
import { AppConfigTest } from "../../src/config/AppConfig.ts"
import { BrokerInProcess } from "../../src/eventlog/Broker.ts"
import { EventLog, EventLogLive } from "../../src/eventlog/EventLog.ts"
import { SqlEventStoreLive } from "../../src/eventlog/SqlEventStore.ts"
import { draft } from "../../src/protocol/Events.ts"
import { Threads } from "../../src/threads/Threads.ts"
import { EmbeddedTestDatabase } from "../utils/TestDatabase.ts"

// pglite-socket runs every client connection on one Postgres session and interleaves their protocol
// messages, so concurrent statements on several connections clobbered each other's unnamed statement.
const stores = Layer.mergeAll(Threads.Default, EventLogLive.pipe(Layer.provide(SqlEventStoreLive))).pipe(
  Layer.provide(Layer.mergeAll(EmbeddedTestDatabase(), BrokerInProcess, AppConfigTest()))
)

layer(stores, { excludeTestServices: true, timeout: 60_000 })(
  "embedded database",
  (it) => {
    it.effect("answers many concurrent queries of different shapes, each correctly", () =>
      Effect.gen(function*() {
        const threads = yield* Threads
        const eventLog = yield* EventLog
        const id = yield* threads.create({ createdBy: "ann", title: null, members: ["ben"] })
        const answers = yield* Effect.forEach(
          Array.from({ length: 300 }, (_, i) => i),
          (i) =>
            i % 4 === 0
              ? Effect.map(
                eventLog.append(id, [
                  draft("message_created", null, { message_id: `m${i}`, user_id: "ann", content: "t" })
                ]),
                (e) => e.length === 1
              )
              : i % 4 === 1
              ? Effect.map(eventLog.head(id), (head) => Option.isSome(head))
              : i % 4 === 2
              ? Effect.map(threads.membership(id, "ben", false), Option.isSome)
              : Effect.map(eventLog.read(id, 0, 10), (events) => events.length <= 10),
          { concurrency: 16 }
        )
        expect(answers.every((answer) => answer)).toBe(true)
      }))
  }
)

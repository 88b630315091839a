/** The search_thread tool: earlier messages of the run's thread that contain the query's words. */
import { Effect, Schema } from "effect"
import { Text } from "../../protocol/ClientFrames.ts"
import type { Threads } from "../../threads/Threads.ts"
import { defineTool, type SearchThreadOutput, type Tool, ToolError } from "../Tool.ts"

// Text, not String: the query's words become ILIKE parameters, and a NUL would fail the search as if the
// database were down. The word split below drops it today; the schema says so whatever the split becomes.
const SearchInput = Schema.Struct({
  query: Text.pipe(Schema.maxLength(500)).annotations({ description: "words that the messages must contain" }),
  limit: Schema.optional(
    Schema.Int.pipe(Schema.between(1, 20)).annotations({ description: "at most this many; 5 when absent" })
  )
})

const terms = (query: string) => query.toLowerCase().split(/[^\p{L}\p{N}]+/u).filter((t) => t.length > 0).slice(0, 8)

export const searchThread = (threads: Threads): Tool =>
  defineTool({
    name: "search_thread",
    description: "Searches the earlier messages of this thread for words; an empty query lists the latest ones.",
    input: SearchInput,
    run: ({ limit = 5, query }, context) =>
      Effect.gen(function*() {
        const matches = yield* threads.searchMessages({
          threadId: context.threadId,
          terms: terms(query),
          excludeMessageId: context.messageId,
          limit
        }).pipe(Effect.mapError(() => new ToolError({ message: "the thread history is unavailable" })))
        return { query, matches } satisfies SearchThreadOutput
      })
  })

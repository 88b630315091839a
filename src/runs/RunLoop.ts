/**
 * The run loop of one run: ask the model, turn its chunks into events,
 * run the tools it calls through the dispatcher, and ask again with the
 * results, until it answers without calling a tool. Every event goes
 * through the event log, which refuses what breaks the run lifecycle.
 */
import { Clock, Data, Duration, Effect, Stream } from "effect"
import { AppConfig } from "../config/AppConfig.ts"
import { EventLog } from "../eventlog/EventLog.ts"
import { RunErrorCode } from "../protocol/Codes.ts"
import { draft, type EventDraft } from "../protocol/Events.ts"
import { Threads } from "../threads/Threads.ts"
import { type ChatMessage, LanguageModel, type ToolCall } from "./LanguageModel.ts"
import { ToolDispatcher } from "./ToolDispatcher.ts"

export class RunFailure extends Data.TaggedError("RunFailure")<{
  readonly code: RunErrorCode
  readonly message: string
}> {}

export interface RunContext {
  readonly threadId: string
  readonly runId: string
  readonly messageId: string
}

export interface RunResult {
  readonly response: string
  readonly duration_ms: number
}

const HISTORY = 20

const SYSTEM_PROMPT = "You are a helpful assistant in a chat thread. Use the tools when they help; answer concisely."

export const makeRunLoop = Effect.gen(function*() {
  const model = yield* LanguageModel
  const dispatcher = yield* ToolDispatcher
  const threads = yield* Threads
  const eventLog = yield* EventLog
  const config = yield* AppConfig

  const run = (context: RunContext): Effect.Effect<RunResult, RunFailure> => {
    const emit = (event: EventDraft) => Effect.asVoid(eventLog.append(context.threadId, [event]))
    const handle = { context, emit }
    return Effect.gen(function*() {
      const started = yield* Clock.currentTimeMillis
      const history = yield* threads.recentMessages(context.threadId, HISTORY)
      const messages: Array<ChatMessage> = [
        { role: "system", content: SYSTEM_PROMPT },
        ...history.map((m): ChatMessage => ({
          role: "user",
          content: m.content,
          userId: m.user_id,
          messageId: m.message_id
        }))
      ]
      let response = ""
      for (let step = 0; step < config.maxAgentSteps; step++) {
        let text = ""
        const calls: Array<ToolCall> = []
        yield* model.stream({ messages, tools: dispatcher.specs }).pipe(
          Stream.mapError((error) => new RunFailure({ code: RunErrorCode.LlmFailed, message: error.reason })),
          Stream.runForEach((chunk) => {
            switch (chunk._tag) {
              case "Thinking":
                return emit(draft("agent_thinking", context.runId, { text: chunk.text }))
              case "TextDelta":
                text += chunk.delta
                return emit(draft("agent_response_delta", context.runId, { delta: chunk.delta }))
              case "ToolCall":
                calls.push(chunk.call)
                return Effect.void
            }
          })
        )
        response += text
        if (calls.length === 0) {
          return { response, duration_ms: (yield* Clock.currentTimeMillis) - started }
        }
        messages.push({ role: "assistant", content: text, toolCalls: calls })
        for (const call of calls) {
          const outcome = yield* dispatcher.execute(call, handle)
          if (!outcome.ok && outcome.timedOut) {
            return yield* new RunFailure({
              code: RunErrorCode.Timeout,
              message: `the tool "${call.name}" did not answer within ${Duration.format(config.toolTimeout)}`
            })
          }
          messages.push({
            role: "tool",
            toolCallId: call.id,
            name: call.name,
            result: outcome.ok ? outcome.output : outcome.error,
            isError: !outcome.ok
          })
        }
      }
      return yield* new RunFailure({
        code: RunErrorCode.Internal,
        message: `the agent did not answer within ${config.maxAgentSteps} steps`
      })
    }).pipe(
      Effect.catchTags({
        DatabaseError: () =>
          Effect.fail(
            new RunFailure({ code: RunErrorCode.Unavailable, message: "the database was lost during the run" })
          ),
        // Ended elsewhere (a cancel on another node, an expired lease) or an event out of order: the run
        // stops here; its end, if it has none yet, says why.
        LifecycleError: (error) => Effect.fail(new RunFailure({ code: RunErrorCode.Internal, message: error.message }))
      }),
      Effect.timeoutFail({
        duration: config.runTimeout,
        onTimeout: () => new RunFailure({ code: RunErrorCode.Timeout, message: "the run took too long" })
      })
    )
  }

  return { run } as const
})

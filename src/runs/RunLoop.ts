/**
 * The run loop of one run: ask the model (through @effect/ai's
 * LanguageModel, whatever the provider), turn its stream into events, run
 * the tools it calls through the dispatcher, and ask again with the results,
 * until it answers without calling a tool. Every event goes through the
 * event log, which refuses what breaks the run lifecycle.
 */
import { Prompt } from "@effect/ai"
import { Clock, Data, Duration, Effect, Stream } from "effect"
import { AppConfig } from "../config/AppConfig.ts"
import { EventLog } from "../eventlog/EventLog.ts"
import { makeModelCall } from "../llm/ModelCall.ts"
import type { ToolCall } from "../llm/SimpleModel.ts"
import { RunErrorCode } from "../protocol/Codes.ts"
import { draft, type EventDraft } from "../protocol/Events.ts"
import { makeHistory } from "./History.ts"
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

export interface Usage {
  readonly input_tokens: number
  readonly output_tokens: number
}

export interface RunResult {
  readonly response: string
  readonly duration_ms: number
  /** Summed over the run's model requests; absent when the provider reported none. */
  readonly usage?: Usage
}

const SYSTEM_PROMPT = "You are a helpful assistant in a chat thread. Use the tools when they help; answer concisely." +
  " When several people write in the thread, each of their messages starts with the author's name and a colon."

export const makeRunLoop = Effect.gen(function*() {
  const modelCall = yield* makeModelCall
  const dispatcher = yield* ToolDispatcher
  const history = yield* makeHistory
  const eventLog = yield* EventLog
  const config = yield* AppConfig

  const run = (context: RunContext): Effect.Effect<RunResult, RunFailure> => {
    const emit = (event: EventDraft) => Effect.asVoid(eventLog.append(context.threadId, [event]))
    const handle = { context, emit }
    return Effect.gen(function*() {
      const started = yield* Clock.currentTimeMillis
      const messages: Array<Prompt.MessageEncoded> = [
        { role: "system", content: SYSTEM_PROMPT },
        ...yield* history.load(context.threadId, context.messageId)
      ]
      let response = ""
      let usage: Usage | undefined
      for (let step = 0; step < config.maxAgentSteps; step++) {
        let text = ""
        const calls: Array<ToolCall> = []
        const thoughts = new Map<string, { text: string; options: Record<string, any> }>()
        const thought = (id: string, delta: string, metadata: Record<string, any> | undefined) => {
          const block = thoughts.get(id) ?? { text: "", options: {} }
          block.text += delta
          if (metadata !== undefined) { for (const [k, v] of Object.entries(metadata)) block.options[k] = v }
          thoughts.set(id, block)
        }
        yield* modelCall.stream({ prompt: Prompt.make(messages), toolkit: dispatcher.toolkit }).pipe(
          Stream.mapError((failure) =>
            new RunFailure({
              code: failure.kind === "timeout" ? RunErrorCode.Timeout : RunErrorCode.LlmFailed,
              message: failure.message
            })
          ),
          Stream.runForEach((part): Effect.Effect<void, RunFailure | EmitError> => {
            switch (part.type) {
              case "reasoning-start":
              case "reasoning-end":
                thought(part.id, "", part.metadata)
                return Effect.void
              case "reasoning-delta":
                thought(part.id, part.delta, part.metadata)
                return part.delta.length === 0
                  ? Effect.void
                  : emit(draft("agent_thinking", context.runId, { text: part.delta }))
              case "text-delta":
                if (part.delta.length === 0) return Effect.void
                text += part.delta
                return emit(draft("agent_response_delta", context.runId, { delta: part.delta }))
              case "tool-call":
                if (part.providerExecuted !== true) calls.push({ id: part.id, name: part.name, input: part.params })
                return Effect.void
              // The model call fails a stream with an `error` part, or one that ends unfinished.
              case "finish": {
                const { inputTokens, outputTokens } = part.usage
                if (inputTokens !== undefined || outputTokens !== undefined) {
                  usage = {
                    input_tokens: (usage?.input_tokens ?? 0) + (inputTokens ?? 0),
                    output_tokens: (usage?.output_tokens ?? 0) + (outputTokens ?? 0)
                  }
                }
                return Effect.void
              }
              default:
                return Effect.void
            }
          })
        )
        response += text
        if (calls.length === 0) {
          const duration_ms = (yield* Clock.currentTimeMillis) - started
          return usage === undefined ? { response, duration_ms } : { response, duration_ms, usage }
        }
        messages.push({
          role: "assistant",
          content: [
            // Anthropic's extended thinking requires the signed thinking before the tool calls it led to.
            ...[...thoughts.values()].filter((t) => t.options.anthropic !== undefined).map((t) => ({
              type: "reasoning" as const,
              text: t.text,
              options: t.options
            })),
            ...(text.length > 0 ? [{ type: "text" as const, text }] : []),
            ...calls.map((call) => ({
              type: "tool-call" as const,
              id: call.id,
              name: call.name,
              params: call.input,
              providerExecuted: false
            }))
          ]
        })
        const results: Array<Prompt.ToolResultPartEncoded> = []
        for (const call of calls) {
          const outcome = yield* dispatcher.execute(call, handle)
          if (!outcome.ok && outcome.timedOut) {
            return yield* new RunFailure({
              code: RunErrorCode.Timeout,
              message: `the tool "${call.name}" did not answer within ${Duration.format(config.toolTimeout)}`
            })
          }
          results.push({
            type: "tool-result",
            id: call.id,
            name: call.name,
            result: outcome.ok ? outcome.output : outcome.error,
            isFailure: !outcome.ok,
            providerExecuted: false
          })
        }
        messages.push({ role: "tool", content: results })
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

type EmitError = Effect.Effect.Error<ReturnType<EventLog["Type"]["append"]>>

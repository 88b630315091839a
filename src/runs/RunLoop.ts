/**
 * The run loop of one run: ask the model (through @effect/ai's
 * LanguageModel, whatever the provider), turn its stream into events, run
 * the tools it calls through the dispatcher, and ask again with the results,
 * until it answers without calling a tool. Every event goes through the
 * event log, which refuses what breaks the run lifecycle.
 *
 * The model's parts that arrive while the run's last events are being
 * stored wait together and are stored in one append, so a run keeps up
 * with its model whatever an append costs, and a delta waits for at most
 * one append before its own. With `DELTA_COALESCE_MS` set, consecutive
 * deltas of one kind in such a group are one event (the text concatenated,
 * unchanged), and after each append the run waits that long, so deltas
 * that arrive within it are one event: fewer, larger events to store and
 * deliver. Off (0), every delta of the model is an event of its own.
 */
import { Prompt, type Response } from "@effect/ai"
import { Clock, Data, Duration, Effect } from "effect"
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

/**
 * How much one append may carry: a part counts 1, and its text 4 more per KiB, so a run that falls behind
 * catches up in appends of at most about 256 small deltas or 64 KiB of text (one larger part goes alone).
 */
const APPEND_COST = 256
const KIB = 1024

type Part = Response.StreamPart<any>

const costOf = (part: Part) =>
  part.type === "text-delta" || part.type === "reasoning-delta" ? 1 + part.delta.length / KIB * 4 : 1

/**
 * A chunk of the model's parts (all that came while the last group was stored: ModelCall reads the model
 * at once) cut into groups of at most APPEND_COST, each stored in one append.
 */
const groupsOf = (chunk: ReadonlyArray<Part>): Array<Array<Part>> => {
  const groups: Array<Array<Part>> = []
  let group: Array<Part> = []
  let cost = 0
  for (const part of chunk) {
    const partCost = costOf(part)
    if (group.length > 0 && cost + partCost > APPEND_COST) {
      groups.push(group)
      group = []
      cost = 0
    }
    group.push(part)
    cost += partCost
  }
  if (group.length > 0) groups.push(group)
  return groups
}

const SYSTEM_PROMPT = "You are a helpful assistant in a chat thread. Use the tools when they help; answer concisely." +
  " When several people write in the thread, each of their messages starts with the author's name and a colon."

export const makeRunLoop = Effect.gen(function*() {
  const modelCall = yield* makeModelCall
  const dispatcher = yield* ToolDispatcher
  const history = yield* makeHistory
  const eventLog = yield* EventLog
  const config = yield* AppConfig

  const coalescing = Duration.toMillis(config.deltaCoalesce) > 0

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
        /** Adds a delta's event to the drafts of this append: to the last one, when coalescing and of its kind. */
        const delta = (drafts: Array<EventDraft>, next: EventDraft) => {
          const last = drafts[drafts.length - 1]
          if (coalescing && last !== undefined && last.event_type === next.event_type) {
            if (last.event_type === "agent_response_delta" && next.event_type === "agent_response_delta") {
              drafts[drafts.length - 1] = draft(last.event_type, last.run_id, {
                delta: last.data.delta + next.data.delta
              })
              return
            }
            if (last.event_type === "agent_thinking" && next.event_type === "agent_thinking") {
              drafts[drafts.length - 1] = draft(last.event_type, last.run_id, { text: last.data.text + next.data.text })
              return
            }
          }
          drafts.push(next)
        }
        /** The events of a group of parts, in one append. */
        const store = (parts: ReadonlyArray<Part>) =>
          Effect.suspend(() => {
            const drafts: Array<EventDraft> = []
            let finished = false
            for (const part of parts) {
              switch (part.type) {
                case "reasoning-start":
                case "reasoning-end":
                  thought(part.id, "", part.metadata)
                  break
                case "reasoning-delta":
                  thought(part.id, part.delta, part.metadata)
                  if (part.delta.length > 0) delta(drafts, draft("agent_thinking", context.runId, { text: part.delta }))
                  break
                case "text-delta":
                  if (part.delta.length === 0) break
                  text += part.delta
                  delta(drafts, draft("agent_response_delta", context.runId, { delta: part.delta }))
                  break
                case "tool-call":
                  if (part.providerExecuted !== true) calls.push({ id: part.id, name: part.name, input: part.params })
                  break
                // The model call fails a stream with an `error` part, or one that ends unfinished.
                case "finish": {
                  finished = true
                  const { inputTokens, outputTokens } = part.usage
                  if (inputTokens !== undefined || outputTokens !== undefined) {
                    usage = {
                      input_tokens: (usage?.input_tokens ?? 0) + (inputTokens ?? 0),
                      output_tokens: (usage?.output_tokens ?? 0) + (outputTokens ?? 0)
                    }
                  }
                  break
                }
                default:
                  break
              }
            }
            if (drafts.length === 0) return Effect.void
            const stored = eventLog.append(context.threadId, drafts)
            return coalescing && !finished ? Effect.zipRight(stored, Effect.sleep(config.deltaCoalesce)) : stored
          })
        // The parts before a failure of the model are stored before the run fails with it (ModelCall hands
        // them on first).
        yield* modelCall.turn(
          { prompt: Prompt.make(messages), toolkit: dispatcher.toolkit },
          (parts) => Effect.forEach(groupsOf(parts), store, { discard: true })
        ).pipe(
          Effect.catchTag("ModelFailure", (failure) =>
            Effect.fail(
              new RunFailure({
                code: failure.kind === "timeout" ? RunErrorCode.Timeout : RunErrorCode.LlmFailed,
                message: failure.message
              })
            ))
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

/**
 * The built-in offline agent: a rule-based LanguageModel. On a user message
 * it plans tool calls from what it recognises (arithmetic, the clock, the
 * thread's history) or replies directly; on tool results it composes the
 * answer and never calls a tool again, so a run always ends.
 */
import type { LanguageModel } from "@effect/ai"
import { Duration, Effect, Layer, Stream } from "effect"
import { randomUUID } from "node:crypto"
import { AppConfig } from "../config/AppConfig.ts"
import { type ModelInfo, simpleModelLayer } from "../llm/ModelInfo.ts"
import { type ChatMessage, LlmError, type ModelChunk, type ToolCall } from "../llm/SimpleModel.ts"
import type { CalculatorInput, ClockInput, SearchThreadInput } from "../runs/Tool.ts"
import { detectClock, detectSearch } from "./BuiltinIntents.ts"
import { composeAnswer, directReply, type Outcome, toDeltas } from "./BuiltinReplies.ts"
import { extractExpressions } from "./Calculator.ts"

export interface RespondOptions {
  /** Names of the tools the agent may call; all built-in tools when absent. */
  readonly tools?: ReadonlyArray<string>
  /** Makes tool call ids; random UUIDs when absent. */
  readonly newId?: () => string
}

// One message cannot make the agent flood the dispatcher with calculations.
const MAX_EXPRESSIONS = 5

interface PlannedCall {
  readonly name: string
  readonly input: CalculatorInput | ClockInput | SearchThreadInput
  readonly thought: string
}

const listed = (items: ReadonlyArray<string>) =>
  items.length <= 1 ? items.join("") : `${items.slice(0, -1).join(", ")} and ${items[items.length - 1]}`

const plan = (content: string, userIds: ReadonlyArray<string>): ReadonlyArray<PlannedCall> => {
  const calls: Array<PlannedCall> = []
  const expressions = extractExpressions(content).slice(0, MAX_EXPRESSIONS)
  if (expressions.length > 0) {
    const each = expressions.length > 1 ? " for each" : ""
    const thought = `The message asks for ${listed(expressions)}; I will use the calculator${each}.`
    expressions.forEach((expression, i) =>
      calls.push({ name: "calculator", input: { expression }, thought: i === 0 ? thought : "" })
    )
  }
  const search = detectSearch(content, userIds)
  if (search !== undefined) {
    const thought = search.query === ""
      ? "The message refers to earlier messages; I will list the latest ones in this thread."
      : `The message refers to earlier messages; I will search the thread for "${search.query}".`
    calls.push({ name: "search_thread", input: search, thought })
  }
  const clock = detectClock(content, calls.length > 0)
  if (clock !== undefined) {
    const zone = clock.timezone === undefined ? "" : ` in ${clock.timezone}`
    calls.push({
      name: "clock",
      input: clock,
      thought: `The message asks for the date or time${zone}; I will check the clock.`
    })
  }
  return calls
}

const thinking = (text: string): ModelChunk => ({ _tag: "Thinking", text })

const answer = (thought: string, text: string): ReadonlyArray<ModelChunk> => [
  thinking(thought),
  ...toDeltas(text).map((delta): ModelChunk => ({ _tag: "TextDelta", delta }))
]

const onUserMessage = (
  message: Extract<ChatMessage, { role: "user" }>,
  messages: ReadonlyArray<ChatMessage>,
  options: RespondOptions
): ReadonlyArray<ModelChunk> => {
  const userIds = [...new Set(messages.flatMap((m) => m.role === "user" ? [m.userId] : []))]
  const planned = plan(message.content, userIds)
  const available = planned.filter((call) => options.tools === undefined || options.tools.includes(call.name))
  const missing = [...new Set(planned.filter((call) => !available.includes(call)).map((call) => call.name))]
  const unavailable = missing.length === 0
    ? []
    : [thinking(`The ${listed(missing)} tool${missing.length > 1 ? "s are" : " is"} not available to me here.`)]
  if (available.length === 0) {
    const reply = directReply(message.content, message.userId)
    return [...unavailable, ...answer(`${reply.reason} No tool is needed; answering directly.`, reply.text)]
  }
  const newId = options.newId ?? (() => `call_${randomUUID()}`)
  return [
    ...unavailable,
    ...available.filter((call) => call.thought !== "").map((call) => thinking(call.thought)),
    ...available.map((call): ModelChunk => ({
      _tag: "ToolCall",
      call: { id: newId(), name: call.name, input: call.input }
    }))
  ]
}

const onToolResults = (since: ReadonlyArray<ChatMessage>): ReadonlyArray<ModelChunk> => {
  const calls = new Map<string, ToolCall>()
  const outcomes: Array<Outcome> = []
  for (const message of since) {
    if (message.role === "assistant") message.toolCalls.forEach((call) => calls.set(call.id, call))
    if (message.role === "tool") {
      const { isError, name, result, toolCallId } = message
      outcomes.push({ name, input: calls.get(toolCallId)?.input, result, isError })
    }
  }
  const results = outcomes.length === 1 ? "1 tool result" : `${outcomes.length} tool results`
  return answer(`Composing the answer from ${results}.`, composeAnswer(outcomes))
}

/**
 * One model turn, as a pure function of the conversation: tool calls for a
 * new user message, or the final answer once the tool results are in.
 */
export const respond = (
  messages: ReadonlyArray<ChatMessage>,
  options: RespondOptions = {}
): ReadonlyArray<ModelChunk> => {
  const last = messages[messages.length - 1]
  if (last?.role === "user") return onUserMessage(last, messages, options)
  if (last?.role === "tool") {
    let start = messages.length
    while (start > 0 && messages[start - 1]!.role !== "user") start--
    return onToolResults(messages.slice(start))
  }
  return answer("There is no new user message to act on.", "I have nothing new to answer.")
}

/** The built-in agent as a model: each turn computed by `respond`, each piece after a pace (0 in tests). */
export const builtinModel = (pace: Duration.Duration) =>
  simpleModelLayer("builtin-agent", (request) => {
    const chunks = Stream.fromIterableEffect(
      // A bug in the rules should end the run as an llm_failed error, not as a defect.
      Effect.try({
        try: () => respond(request.messages, { tools: request.tools.map((tool) => tool.name) }),
        catch: (cause) => new LlmError({ reason: "the built-in agent failed", cause })
      })
    )
    return Duration.isZero(pace) ? chunks : Stream.tap(chunks, () => Effect.sleep(pace))
  }, "builtin")

export const BuiltinModelLive: Layer.Layer<LanguageModel.LanguageModel | ModelInfo, never, AppConfig> = Layer
  .unwrapEffect(Effect.map(AppConfig, (config) => builtinModel(config.llm.builtinPace)))

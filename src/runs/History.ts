/**
 * The history a model request carries: the thread's user messages, each
 * earlier run's tool calls with their results and its answer, read from the
 * event log and kept newest first within LLM_HISTORY_CHARS. A message and
 * the runs it started are kept or dropped together, so a tool call never
 * goes without its result. In a thread of several members (or where
 * several users have spoken), each message names its author.
 */
import type { Prompt } from "@effect/ai"
import { Effect } from "effect"
import { AppConfig } from "../config/AppConfig.ts"
import { EventLog } from "../eventlog/EventLog.ts"
import { AUTHOR, type Author } from "../llm/SimpleModel.ts"
import type { StoredEvent } from "../protocol/Events.ts"
import { Threads } from "../threads/Threads.ts"

/** Events read per request at most; far more than a usual history budget holds. */
const EVENTS = 500

/** Past any seq: seqs are 32-bit integers in the log. */
const LAST_SEQ = 2_147_483_647

interface ToolStep {
  readonly id: string
  readonly name: string
  readonly input: unknown
  result?: { readonly value: unknown; readonly isError: boolean }
}

interface PastRun {
  readonly steps: Array<ToolStep>
  answer?: string
}

interface Unit {
  readonly messageId: string
  readonly userId: string
  readonly content: string
  readonly runs: Array<PastRun>
}

const size = (value: unknown) => typeof value === "string" ? value.length : (JSON.stringify(value) ?? "").length

const unitSize = (unit: Unit) =>
  unit.content.length + unit.runs.reduce(
    (sum, run) =>
      sum + (run.answer?.length ?? 0) +
      run.steps.reduce((n, step) => n + step.name.length + size(step.input) + size(step.result?.value), 0),
    0
  )

/** The conversation, oldest first, from events newest first, ending at the message `messageId`. */
const unitsOf = (newestFirst: ReadonlyArray<StoredEvent>, messageId: string): Array<Unit> => {
  const start = newestFirst.findIndex((e) => e.event_type === "message_created" && data(e).message_id === messageId)
  const events = start < 0 ? [] : newestFirst.slice(start).reverse()
  const units: Array<Unit> = []
  const byMessage = new Map<string, Unit>()
  const runs = new Map<string, PastRun>()
  for (const event of events) {
    const d = data(event)
    switch (event.event_type) {
      case "message_created": {
        const unit: Unit = { messageId: d.message_id, userId: d.user_id, content: d.content, runs: [] }
        units.push(unit)
        byMessage.set(unit.messageId, unit)
        break
      }
      case "agent_started": {
        const unit = byMessage.get(d.message_id)
        if (unit === undefined || event.run_id === null) break
        const run: PastRun = { steps: [] }
        unit.runs.push(run)
        runs.set(event.run_id, run)
        break
      }
      case "tool_executing":
        runs.get(event.run_id ?? "")?.steps.push({ id: d.tool_call_id, name: d.tool, input: d.input })
        break
      case "tool_completed": {
        const step = runs.get(event.run_id ?? "")?.steps.find((s) => s.id === d.tool_call_id)
        if (step !== undefined) {
          step.result = "error" in d ? { value: d.error, isError: true } : { value: d.output, isError: false }
        }
        break
      }
      case "agent_completed": {
        const run = runs.get(event.run_id ?? "")
        if (run !== undefined) run.answer = d.response
        break
      }
    }
  }
  return units
}

const data = (event: StoredEvent) => event.data as Record<string, any>

const toMessages = (unit: Unit, namedAuthors: boolean): Array<Prompt.MessageEncoded> => {
  const author: Author = { userId: unit.userId, messageId: unit.messageId, content: unit.content }
  const messages: Array<Prompt.MessageEncoded> = [{
    role: "user",
    content: namedAuthors ? `${unit.userId}: ${unit.content}` : unit.content,
    options: { [AUTHOR]: { ...author } }
  }]
  for (const run of unit.runs) {
    for (const step of run.steps) {
      if (step.result === undefined) continue
      messages.push({
        role: "assistant",
        content: [{ type: "tool-call", id: step.id, name: step.name, params: step.input, providerExecuted: false }]
      }, {
        role: "tool",
        content: [{
          type: "tool-result",
          id: step.id,
          name: step.name,
          result: step.result.value,
          isFailure: step.result.isError,
          providerExecuted: false
        }]
      })
    }
    if (run.answer !== undefined && run.answer.length > 0) {
      messages.push({ role: "assistant", content: [{ type: "text", text: run.answer }] })
    }
  }
  return messages
}

export const makeHistory = Effect.gen(function*() {
  const eventLog = yield* EventLog
  const threads = yield* Threads
  const { llm } = yield* AppConfig

  /** The history of the run of `messageId`, that message last. */
  const load = (threadId: string, messageId: string) =>
    Effect.map(
      Effect.all([eventLog.conversation(threadId, LAST_SEQ, EVENTS), threads.memberCount(threadId)], {
        concurrency: 2
      }),
      ([events, members]) => {
        const units = unitsOf(events, messageId)
        const kept: Array<Unit> = []
        let budget = llm.historyChars
        for (let i = units.length - 1; i >= 0; i--) {
          const cost = unitSize(units[i]!)
          // The run's own message is always sent, whatever its size.
          if (kept.length > 0 && cost > budget) break
          budget -= cost
          kept.unshift(units[i]!)
        }
        const namedAuthors = members > 1 || new Set(kept.map((unit) => unit.userId)).size > 1
        return kept.flatMap((unit) => toMessages(unit, namedAuthors))
      }
    )

  return { load } as const
})

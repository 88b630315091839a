/**
 * The AG-UI 1.0 events of a run, derived from its stored events: a pure,
 * deterministic fold. Each stored event gives a group of AG-UI events (none
 * for an event of no run, or of another run), and the same stored events
 * always give the same groups, ids and timestamps included. That is what
 * makes a resume exact: the server derives the run again from its first
 * event and leaves out what the client had (see `Position`).
 */
import { type AGUIEvent, EventType, PROTOCOL_VERSION } from "@ag-ui/core"
import type { EventPayloads, StoredEvent } from "../protocol/Events.ts"

/** What the fold carries from one stored event to the next: the text message being streamed, if any. */
export interface MappingState {
  readonly text: string | null
}

export const initialState: MappingState = { text: null }

export interface Step {
  readonly events: ReadonlyArray<AGUIEvent>
  readonly state: MappingState
  /** The run's terminal event: nothing of the run follows it. */
  readonly terminal: boolean
}

/** Ids of the messages the run's events open, unique within the thread and the same on every derivation. */
export const textMessageId = (runId: string, seq: number) => `${runId}:text:${seq}`
export const reasoningMessageId = (runId: string, seq: number) => `${runId}:reasoning:${seq}`
export const toolMessageId = (runId: string, toolCallId: string) => `${runId}:tool:${toolCallId}`

const data = <K extends keyof EventPayloads>(event: StoredEvent, _type: K) => event.data as EventPayloads[K]

/** The stored tool output (or error), as the string TOOL_CALL_RESULT carries. */
const toolContent = (completed: EventPayloads["tool_completed"]) =>
  "error" in completed ? JSON.stringify({ error: completed.error }) : JSON.stringify(completed.output ?? null)

/**
 * The AG-UI events of one stored event of the run `runId` in thread `threadId`, after `state`.
 * A text message stays open across consecutive deltas and is closed by whatever comes next.
 */
export const step = (threadId: string, runId: string, state: MappingState, event: StoredEvent): Step => {
  if (event.run_id !== runId) return { events: [], state, terminal: false }
  const timestamp = Date.parse(event.timestamp)
  const out: Array<AGUIEvent> = []
  const closeText = () => {
    if (state.text !== null) out.push({ type: EventType.TEXT_MESSAGE_END, timestamp, messageId: state.text })
  }
  switch (event.event_type) {
    case "agent_started":
      out.push({ type: EventType.RUN_STARTED, timestamp, threadId, runId, protocolVersion: PROTOCOL_VERSION })
      return { events: out, state: initialState, terminal: false }
    case "agent_thinking": {
      closeText()
      const messageId = reasoningMessageId(runId, event.seq)
      const { text } = data(event, "agent_thinking")
      out.push(
        { type: EventType.REASONING_START, timestamp, messageId },
        { type: EventType.REASONING_MESSAGE_START, timestamp, messageId, role: "reasoning" },
        ...(text.length > 0
          ? [{ type: EventType.REASONING_MESSAGE_CONTENT, timestamp, messageId, delta: text } as const]
          : []),
        { type: EventType.REASONING_MESSAGE_END, timestamp, messageId },
        { type: EventType.REASONING_END, timestamp, messageId }
      )
      return { events: out, state: initialState, terminal: false }
    }
    case "agent_response_delta": {
      const { delta } = data(event, "agent_response_delta")
      let messageId = state.text
      if (messageId === null) {
        messageId = textMessageId(runId, event.seq)
        out.push({ type: EventType.TEXT_MESSAGE_START, timestamp, messageId, role: "assistant" })
      }
      if (delta.length > 0) out.push({ type: EventType.TEXT_MESSAGE_CONTENT, timestamp, messageId, delta })
      return { events: out, state: { text: messageId }, terminal: false }
    }
    case "tool_executing": {
      closeText()
      const { tool, tool_call_id, input } = data(event, "tool_executing")
      out.push(
        { type: EventType.TOOL_CALL_START, timestamp, toolCallId: tool_call_id, toolCallName: tool },
        { type: EventType.TOOL_CALL_ARGS, timestamp, toolCallId: tool_call_id, delta: JSON.stringify(input ?? {}) },
        { type: EventType.TOOL_CALL_END, timestamp, toolCallId: tool_call_id }
      )
      return { events: out, state: initialState, terminal: false }
    }
    case "tool_completed": {
      closeText()
      const completed = data(event, "tool_completed")
      out.push({
        type: EventType.TOOL_CALL_RESULT,
        timestamp,
        messageId: toolMessageId(runId, completed.tool_call_id),
        toolCallId: completed.tool_call_id,
        content: toolContent(completed),
        role: "tool"
      })
      return { events: out, state: initialState, terminal: false }
    }
    case "agent_completed": {
      closeText()
      const { usage } = data(event, "agent_completed")
      out.push({
        type: EventType.RUN_FINISHED,
        timestamp,
        threadId,
        runId,
        outcome: { type: "success" },
        ...(usage === undefined
          ? {}
          : {
            usage: [{
              inputTokens: usage.input_tokens,
              outputTokens: usage.output_tokens,
              totalTokens: usage.input_tokens + usage.output_tokens
            }]
          })
      })
      return { events: out, state: initialState, terminal: true }
    }
    case "agent_error": {
      closeText()
      const { code, message } = data(event, "agent_error")
      out.push(
        code === "cancelled"
          ? { type: EventType.RUN_FINISHED, timestamp, threadId, runId, outcome: { type: "cancelled" } }
          : { type: EventType.RUN_ERROR, timestamp, message, code }
      )
      return { events: out, state: initialState, terminal: true }
    }
    case "message_created":
    case "members_changed":
      // Thread events carry no run id; unreachable here, but exhaustive.
      return { events: [], state, terminal: false }
  }
}

/**
 * Where a client is in a run's AG-UI stream: after the AG-UI event `index` of the group derived from
 * the stored event `seq` (`index` null: after the whole group). It is the SSE `id` of the last event
 * the client received: `"<seq>"` on the last event of a group, `"<seq>.<index>"` on the ones before.
 */
export interface Position {
  readonly seq: number
  readonly index: number | null
}

export const eventId = (seq: number, index: number, groupSize: number) =>
  index === groupSize - 1 ? `${seq}` : `${seq}.${index}`

export const parsePosition = (id: string): Position | undefined => {
  const match = /^(\d{1,15})(?:\.(\d{1,6}))?$/.exec(id.trim())
  if (match === null) return undefined
  return { seq: Number(match[1]), index: match[2] === undefined ? null : Number(match[2]) }
}

/** Whether the AG-UI event `index` of group `seq` comes after `position` (the client has not had it). */
export const isAfter = (position: Position | undefined, seq: number, index: number) =>
  position === undefined || seq > position.seq || (seq === position.seq && position.index !== null &&
    index > position.index)

/**
 * Thread events (PROTOCOL.md section 3): what a run or a user produces, how
 * it is stored, and the one envelope every client receives.
 */
import type { RunErrorCode } from "./Codes.ts"

export interface EventPayloads {
  readonly message_created: { readonly message_id: string; readonly user_id: string; readonly content: string }
  readonly agent_started: { readonly agent: string; readonly message_id: string }
  readonly agent_thinking: { readonly text: string }
  readonly tool_executing: { readonly tool_call_id: string; readonly tool: string; readonly input: unknown }
  readonly tool_completed:
    & { readonly tool_call_id: string; readonly tool: string; readonly duration_ms: number }
    & ({ readonly output: unknown } | { readonly error: string })
  readonly agent_response_delta: { readonly delta: string }
  readonly agent_completed: { readonly response: string; readonly duration_ms: number }
  readonly agent_error: { readonly code: RunErrorCode; readonly message: string }
  readonly members_changed: {
    readonly added: ReadonlyArray<string>
    readonly removed: ReadonlyArray<string>
    readonly by: string
  }
}

export type EventType = keyof EventPayloads

/** An event before it has a place in its thread. */
export type EventDraft = {
  readonly [K in EventType]: {
    readonly event_type: K
    readonly run_id: string | null
    readonly data: EventPayloads[K]
  }
}[EventType]

export const draft = <K extends EventType>(
  event_type: K,
  run_id: string | null,
  data: EventPayloads[K]
): EventDraft => ({ event_type, run_id, data } as EventDraft)

/** An event as stored: its draft plus id, thread, seq and time. */
export interface StoredEvent {
  readonly event_id: string
  readonly thread_id: string
  readonly run_id: string | null
  readonly seq: number
  readonly timestamp: string
  readonly event_type: EventType
  readonly data: unknown
}

/** The envelope of section 3, serialised once and sent as the same bytes to every connection. */
export const encodeEnvelope = (event: StoredEvent): string =>
  JSON.stringify({
    type: "event",
    event_type: event.event_type,
    event_id: event.event_id,
    thread_id: event.thread_id,
    run_id: event.run_id,
    seq: event.seq,
    timestamp: event.timestamp,
    data: event.data
  })

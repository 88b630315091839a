/**
 * Thread events (docs/PROTOCOL.md section 3): the Schema of each event's
 * `data`, the envelope every client receives, and an event as stored. The
 * server builds events from these types and the typed client decodes them
 * with these Schemas: the contract is written once.
 */
import { Schema } from "effect"
import { RunErrorCode } from "./Codes.ts"

const ToolCallId = { tool_call_id: Schema.String, tool: Schema.String }

export const EventData = {
  message_created: Schema.Struct({ message_id: Schema.String, user_id: Schema.String, content: Schema.String }),
  agent_started: Schema.Struct({ agent: Schema.String, message_id: Schema.String }),
  agent_thinking: Schema.Struct({ text: Schema.String }),
  tool_executing: Schema.Struct({ ...ToolCallId, input: Schema.Unknown }),
  tool_completed: Schema.Union(
    Schema.Struct({ ...ToolCallId, output: Schema.Unknown, duration_ms: Schema.Number }),
    Schema.Struct({ ...ToolCallId, error: Schema.String, duration_ms: Schema.Number })
  ),
  agent_response_delta: Schema.Struct({ delta: Schema.String }),
  agent_completed: Schema.Struct({
    response: Schema.String,
    duration_ms: Schema.Number,
    /** An addition to protocol 1: the tokens of the run's model requests, when the provider reports them. */
    usage: Schema.optional(Schema.Struct({ input_tokens: Schema.Number, output_tokens: Schema.Number }))
  }),
  agent_error: Schema.Struct({ code: Schema.Literal(...Object.values(RunErrorCode)), message: Schema.String }),
  /** An addition to protocol 1: a change of the thread's members. */
  members_changed: Schema.Struct({
    added: Schema.Array(Schema.String),
    removed: Schema.Array(Schema.String),
    by: Schema.String
  })
} as const

export type EventType = keyof typeof EventData
export type EventPayloads = { readonly [K in EventType]: typeof EventData[K]["Type"] }

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
): Extract<EventDraft, { event_type: K }> => ({ event_type, run_id, data } as Extract<EventDraft, { event_type: K }>)

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

const envelope = <K extends EventType>(eventType: K) =>
  Schema.Struct({
    type: Schema.Literal("event"),
    event_type: Schema.Literal(eventType),
    event_id: Schema.String,
    thread_id: Schema.String,
    run_id: Schema.NullOr(Schema.String),
    seq: Schema.Int,
    timestamp: Schema.String,
    data: EventData[eventType]
  })

/** The envelope of section 3, one member per event type. */
export const EventFrame = Schema.Union(
  envelope("message_created"),
  envelope("agent_started"),
  envelope("agent_thinking"),
  envelope("tool_executing"),
  envelope("tool_completed"),
  envelope("agent_response_delta"),
  envelope("agent_completed"),
  envelope("agent_error"),
  envelope("members_changed")
)
export type EventFrame = typeof EventFrame.Type

/** The envelope, serialised once and sent as the same bytes to every connection. */
export const encodeEnvelope = (event: StoredEvent): string =>
  JSON.stringify(
    {
      type: "event",
      event_type: event.event_type,
      event_id: event.event_id,
      thread_id: event.thread_id,
      run_id: event.run_id,
      seq: event.seq,
      timestamp: event.timestamp,
      // The stored data was built from the EventData types above (drafts are typed by them).
      data: event.data
    } satisfies Omit<typeof EventFrame.Encoded, "data"> & { readonly data: unknown }
  )

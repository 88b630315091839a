/**
 * Server-to-client frames other than events (docs/PROTOCOL.md sections 1
 * and 2): their Schemas, which the typed client decodes with, and their
 * encoders, whose argument types are those Schemas' encoded types, so a
 * frame the server sends cannot drift from the contract.
 */
import { Schema } from "effect"
import { ErrorCode, PROTOCOL_VERSION } from "./Codes.ts"
import { EventFrame } from "./Events.ts"

export const Welcome = Schema.Struct({
  type: Schema.Literal("welcome"),
  protocol: Schema.Number,
  connection_id: Schema.String,
  user_id: Schema.String,
  heartbeat_ms: Schema.Number,
  server_time: Schema.String
})

export const Pong = Schema.Struct({ type: Schema.Literal("pong"), ref: Schema.optional(Schema.String) })

/** One shape for every request's success; which fields it carries depends on the request (section 2). */
export const Ack = Schema.Struct({
  type: Schema.Literal("ack"),
  ref: Schema.String,
  thread_id: Schema.optional(Schema.String),
  head_seq: Schema.optional(Schema.Int),
  message_id: Schema.optional(Schema.String),
  /** Null for a message queued with `on_busy: "enqueue"` (an addition): its run has not started yet. */
  run_id: Schema.optional(Schema.NullOr(Schema.String)),
  /** An addition: true when the message was queued; its run's `agent_started` names it. */
  queued: Schema.optional(Schema.Boolean),
  /** An addition, on `join_thread`'s ack: the members with a connection on any node, sorted. */
  online: Schema.optional(Schema.Array(Schema.String))
})

/** An addition: who of a joined thread's members is online changed; not an event, never stored. */
export const Presence = Schema.Struct({
  type: Schema.Literal("presence"),
  thread_id: Schema.String,
  online: Schema.Array(Schema.String)
})

export const ErrorFrame = Schema.Struct({
  type: Schema.Literal("error"),
  ref: Schema.optional(Schema.String),
  code: Schema.Literal(...Object.values(ErrorCode)),
  message: Schema.String
})

export const ServerFrame = Schema.Union(Welcome, Pong, Ack, ErrorFrame, Presence, EventFrame)
export type ServerFrame = typeof ServerFrame.Type

export const welcome = (input: {
  readonly connectionId: string
  readonly userId: string
  readonly heartbeatMs: number
  readonly now: Date
}) =>
  JSON.stringify(
    {
      type: "welcome",
      protocol: PROTOCOL_VERSION,
      connection_id: input.connectionId,
      user_id: input.userId,
      heartbeat_ms: input.heartbeatMs,
      server_time: input.now.toISOString()
    } satisfies typeof Welcome.Encoded
  )

export const pong = (ref: string | undefined) =>
  JSON.stringify((ref === undefined ? { type: "pong" } : { type: "pong", ref }) satisfies typeof Pong.Encoded)

export const ack = (ref: string, fields: Omit<typeof Ack.Encoded, "type" | "ref">) =>
  JSON.stringify({ type: "ack", ref, ...fields } satisfies typeof Ack.Encoded)

export const error = (ref: string | undefined, code: ErrorCode, message: string) =>
  JSON.stringify(
    (ref === undefined
      ? { type: "error", code, message }
      : { type: "error", ref, code, message }) satisfies typeof ErrorFrame.Encoded
  )

export const presence = (threadId: string, online: ReadonlyArray<string>) =>
  JSON.stringify({ type: "presence", thread_id: threadId, online } satisfies typeof Presence.Encoded)

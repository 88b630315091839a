/**
 * Server-to-client frames other than events (PROTOCOL.md sections 1 and 2),
 * serialised where they are built.
 */
import { type ErrorCode, PROTOCOL_VERSION } from "./Codes.ts"

export const welcome = (input: {
  readonly connectionId: string
  readonly userId: string
  readonly heartbeatMs: number
  readonly now: Date
}) =>
  JSON.stringify({
    type: "welcome",
    protocol: PROTOCOL_VERSION,
    connection_id: input.connectionId,
    user_id: input.userId,
    heartbeat_ms: input.heartbeatMs,
    server_time: input.now.toISOString()
  })

export const pong = (ref: string | undefined) =>
  JSON.stringify(ref === undefined ? { type: "pong" } : { type: "pong", ref })

export const ack = (ref: string, fields: Record<string, unknown>) => JSON.stringify({ type: "ack", ref, ...fields })

export const error = (ref: string | undefined, code: ErrorCode, message: string) =>
  JSON.stringify(ref === undefined ? { type: "error", code, message } : { type: "error", ref, code, message })

/**
 * Server frames decoded with the protocol's Schemas (src/protocol), and
 * what PROTOCOL.md section 7 asks of a client for frames it does not know:
 * an event of an unknown type still counts for `seq`; an error or
 * `agent_error` code it does not know is kept (the error as sent, the run's
 * end as `internal`); any other unknown frame is ignored.
 */
import { Either, Schema } from "effect"
import { ServerFrame as ServerFrameSchema } from "../protocol/ServerFrames.ts"
import type { ServerFrame } from "../protocol/ServerFrames.ts"

export type { ServerFrame }

export type Incoming =
  | { readonly kind: "frame"; readonly frame: ServerFrame }
  /** An event the Schemas do not know (a later event type): only its place in the thread counts. */
  | { readonly kind: "unknown_event"; readonly thread_id: string; readonly seq: number }
  /** An error frame whose code this SDK does not know. */
  | { readonly kind: "error"; readonly ref: string | undefined; readonly code: string; readonly message: string }
  | { readonly kind: "ignored"; readonly reason: string }

const decode = Schema.decodeUnknownEither(ServerFrameSchema)

const isRecord = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value)

export const decodeServerFrame = (text: string): Incoming => {
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch {
    return { kind: "ignored", reason: "not JSON" }
  }
  const decoded = decode(value)
  if (Either.isRight(decoded)) return { kind: "frame", frame: decoded.right }
  if (!isRecord(value)) return { kind: "ignored", reason: "not an object" }
  if (value.type === "error" && typeof value.code === "string") {
    return {
      kind: "error",
      ref: typeof value.ref === "string" ? value.ref : undefined,
      code: value.code,
      message: typeof value.message === "string" ? value.message : ""
    }
  }
  if (value.type === "event" && typeof value.thread_id === "string" && Number.isInteger(value.seq)) {
    if (value.event_type === "agent_error" && isRecord(value.data)) {
      const message = typeof value.data.message === "string" ? value.data.message : ""
      const asInternal = decode({ ...value, data: { code: "internal", message } })
      if (Either.isRight(asInternal)) return { kind: "frame", frame: asInternal.right }
    }
    return { kind: "unknown_event", thread_id: value.thread_id, seq: value.seq as number }
  }
  return { kind: "ignored", reason: `unknown frame ${String(value.type)}` }
}

/**
 * The SDK's types, every one derived from the Schemas of src/protocol: a
 * thread event is the protocol's `EventFrame` (its `data` typed by its
 * `event_type`), an ack is the protocol's `Ack`, and so on. What the SDK
 * adds is only its own notices (connected, disconnected, a gap found).
 */
import type { ClientFrame } from "../protocol/ClientFrames.ts"
import type { EventFrame, EventType } from "../protocol/Events.ts"
import type {
  Ack as AckSchema,
  ErrorFrame,
  Presence as PresenceSchema,
  Welcome as WelcomeSchema
} from "../protocol/ServerFrames.ts"

export type { OnBusy } from "../protocol/ClientFrames.ts"
export type { ErrorCode, RunErrorCode } from "../protocol/Codes.ts"
export type { EventPayloads, EventType } from "../protocol/Events.ts"

/** A thread event as delivered, `data` typed by `event_type`. */
export type ThreadEvent = EventFrame
export type ThreadEventOf<K extends EventType> = Extract<ThreadEvent, { readonly event_type: K }>
/** The event that ends a run: `agent_completed` or `agent_error`. */
export type TerminalEvent = ThreadEventOf<"agent_completed" | "agent_error">
export type Ack = typeof AckSchema.Type
export type Welcome = typeof WelcomeSchema.Type
/** Who of a joined thread's members is online changed (not an event: no `seq`, never replayed). */
export type Presence = typeof PresenceSchema.Type
export type ServerError = typeof ErrorFrame.Type

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never
/** A client frame without its request `id`, which the SDK assigns. */
export type Request = DistributiveOmit<typeof ClientFrame.Encoded, "id">

/** Events of a thread were missing (a `seq` skipped): the SDK asks the server for them again. */
export interface Gap {
  readonly type: "gap"
  readonly thread_id: string
  readonly expected: number
  readonly received: number
}

/** The connection is up and welcomed; `reconnected` after the first time, once every joined thread is rejoined. */
export interface Connected {
  readonly type: "connected"
  readonly welcome: Welcome
  readonly reconnected: boolean
}

/** The connection closed; `reconnecting` says whether the SDK opens a new one. */
export interface Disconnected {
  readonly type: "disconnected"
  readonly code: number
  readonly reason: string
  readonly reconnecting: boolean
}

/** A `refresh_token` failed (or the token provider did); the connection keeps its token until it expires. */
export interface TokenRefreshFailed {
  readonly type: "token_refresh_failed"
  readonly error: unknown
}

/** What one thread tells its listeners. */
export type ThreadUpdate = ThreadEvent | Presence | Gap
/** What the client tells its listeners. */
export type ClientEvent = ThreadUpdate | Connected | Disconnected | TokenRefreshFailed

/** Why the token provider is asked for a token. */
export type TokenReason = "connect" | "expiring" | "expired" | "refused"
export type TokenProvider = (reason: TokenReason) => string | Promise<string>

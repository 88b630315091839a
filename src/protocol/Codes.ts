/**
 * The close codes and error codes of the wire protocol, one table each,
 * exactly as docs/PROTOCOL.md sections 1 to 4 name them.
 */
export const CloseCode = {
  Normal: 1000,
  GoingAway: 1001,
  /** An addition: a text frame that is not UTF-8; the `ws` library closes with it, as RFC 6455 requires. */
  InvalidPayload: 1007,
  PolicyViolation: 1008,
  MessageTooBig: 1009,
  InternalError: 1011,
  TryAgainLater: 1013,
  TokenExpired: 4001
} as const
export type CloseCode = typeof CloseCode[keyof typeof CloseCode]

export const ErrorCode = {
  InvalidMessage: "invalid_message",
  NotFound: "not_found",
  Forbidden: "forbidden",
  RateLimited: "rate_limited",
  Busy: "busy",
  Internal: "internal",
  /** An addition to PROTOCOL.md section 2: the database is lost for now; try again shortly. */
  Unavailable: "unavailable"
} as const
export type ErrorCode = typeof ErrorCode[keyof typeof ErrorCode]

/** Codes of `agent_error` events. */
export const RunErrorCode = {
  Cancelled: "cancelled",
  LlmFailed: "llm_failed",
  ToolFailed: "tool_failed",
  Timeout: "timeout",
  Internal: "internal",
  /** An addition to PROTOCOL.md section 3: the database was lost during the run. */
  Unavailable: "unavailable"
} as const
export type RunErrorCode = typeof RunErrorCode[keyof typeof RunErrorCode]

/** Refusals before the upgrade: plain HTTP with a JSON body. */
export const RefusalCode = {
  Unauthorized: { status: 401, error: "unauthorized" },
  Forbidden: { status: 403, error: "forbidden" },
  /** An addition to PROTOCOL.md section 1: the user already holds as many connections as allowed. */
  TooManyConnections: { status: 429, error: "rate_limited" },
  Unavailable: { status: 503, error: "unavailable" }
} as const
export type RefusalCode = typeof RefusalCode[keyof typeof RefusalCode]

export const PROTOCOL_VERSION = 1

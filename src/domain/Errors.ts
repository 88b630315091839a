/**
 * Errors. `RequestError` is what a client sees as an `error` frame;
 * `StartupError` stops the process with a message naming the component.
 */
import { Data, Schema } from "effect"
import { ErrorCode } from "../protocol/Codes.ts"

export class RequestError extends Schema.TaggedError<RequestError>()("RequestError", {
  code: Schema.Literal(...Object.values(ErrorCode)),
  message: Schema.String
}) {
  static notFound(what: string) {
    return new RequestError({ code: ErrorCode.NotFound, message: `${what} not found` })
  }
  static busy(message: string) {
    return new RequestError({ code: ErrorCode.Busy, message })
  }
  static invalid(message: string) {
    return new RequestError({ code: ErrorCode.InvalidMessage, message })
  }
  static forbidden(message: string) {
    return new RequestError({ code: ErrorCode.Forbidden, message })
  }
  static internal(message = "internal error") {
    return new RequestError({ code: ErrorCode.Internal, message })
  }
}

export type Component = "config" | "database" | "broker" | "auth" | "model" | "websocket" | "supervisor" | "http"

/** A component could not be built; the process logs `message` and exits non-zero. */
export class StartupError extends Data.TaggedError("StartupError")<{
  readonly component: Component
  readonly reason: string
  readonly cause?: unknown
}> {
  override get message() {
    const detail = this.cause instanceof Error ? `: ${this.cause.message}` : ""
    return `${capitalize(this.component)} failed to start: ${this.reason}${detail}`
  }
}

const capitalize = (s: string) => s.charAt(0).toUpperCase() + s.slice(1)

/** An unexpected failure talking to the database, after startup. */
export class DatabaseError extends Data.TaggedError("DatabaseError")<{
  readonly reason: string
  readonly cause?: unknown
  /** The failure came at COMMIT: the server may have committed anyway. */
  readonly uncertain?: boolean
}> {}

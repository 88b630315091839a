/** The failures of the SDK's requests and connections, each with a `_tag` for Effect's `catchTag`. */
import type { ErrorCode } from "../protocol/Codes.ts"

/** The server answered the request with an `error` frame (or the SDK refused it before sending, `invalid_message`). */
export class RequestError extends Error {
  readonly _tag = "RequestError"
  constructor(
    /** A code of PROTOCOL.md section 2; a code this SDK does not know is passed on as sent. */
    readonly code: ErrorCode | (string & {}),
    message: string
  ) {
    super(`${code}: ${message}`)
  }
}

/** No reply within the request's timeout. */
export class RequestTimeout extends Error {
  readonly _tag = "RequestTimeout"
  constructor(readonly request: string, readonly timeoutMs: number) {
    super(`no reply to ${request} within ${timeoutMs} ms`)
  }
}

/** The connection closed while the request was sent and not answered: it may or may not have been done. */
export class ConnectionLost extends Error {
  readonly _tag = "ConnectionLost"
  constructor(readonly request: string, readonly code: number) {
    super(`the connection closed (${code}) before ${request} was answered`)
  }
}

/** The client is closed (by `close()`, or for good after a close code it must not reconnect after). */
export class ClientClosed extends Error {
  readonly _tag = "ClientClosed"
  constructor(readonly code: number, readonly reason: string) {
    super(`the client is closed (${code}${reason === "" ? "" : `: ${reason}`})`)
  }
}

/** The first connection could not be opened (refused before the upgrade, unreachable, or closed before `welcome`). */
export class ConnectError extends Error {
  readonly _tag = "ConnectError"
  constructor(readonly code: number, reason: string) {
    super(`could not connect (${code}${reason === "" ? "" : `: ${reason}`})`)
  }
}

export type ChatError = RequestError | RequestTimeout | ConnectionLost | ClientClosed

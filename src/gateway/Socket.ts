/**
 * The little the WebSocket core (Connection, Session, Hub) needs of a
 * socket, and the little it tells back. Only the `ws` adapter
 * (WsAdapter.ts) knows a real WebSocket; tests drive the core with a fake.
 */

/** A frame: a string, or the bytes of a string already encoded once for every recipient. */
export type Frame = string | Buffer

export interface ClientSocket {
  /** Writes text frames as one batch; `written` runs once the socket has taken the last of them. */
  readonly send: (frames: ReadonlyArray<Frame>, written: (error?: Error | null) => void) => void
  /** Starts the closing handshake; a socket already closing or closed ignores it. */
  readonly close: (code: number, reason: string) => void
  /** Drops the connection at once, without a handshake (a client that stopped answering). */
  readonly terminate: () => void
  readonly ping: () => void
  /** Whether frames may be written now. */
  readonly isOpen: () => boolean
}

/** What the socket reports to the core, once it is wired. */
export interface SocketEvents {
  /** A frame from the client; binary frames are not part of the protocol. */
  readonly message: (data: string, binary: boolean) => void
  readonly pong: () => void
  /** The socket has closed, whoever closed it. */
  readonly closed: (code: number) => void
}

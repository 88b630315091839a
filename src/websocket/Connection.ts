/**
 * One client connection as the hub sees it: the socket, the principal, a
 * bounded outbox drained by the connection's writer fiber, and a cursor per
 * joined thread. Anything that writes to the client goes through `push`, so
 * nothing outside the connection ever blocks on its socket.
 */
import { Effect, Queue } from "effect"
import { randomUUID } from "node:crypto"
import { WebSocket } from "ws"
import type { Principal } from "../auth/Auth.ts"
import type { BrokerMessage } from "../broker/Broker.ts"
import { CloseCode } from "../domain/Codes.ts"

/** Where a connection is in a thread's event stream. */
export interface ThreadCursor {
  /** The last seq sent to the client. */
  lastSeq: number
  /** Live events held back while the connection catches up from the event log; null when live. */
  pending: Array<BrokerMessage> | null
}

const WRITE_BATCH = 256

export class Connection {
  readonly id = randomUUID()
  readonly threads = new Map<string, ThreadCursor>()
  missedPongs = 0
  private closing = false

  constructor(
    readonly ws: WebSocket,
    readonly principal: Principal,
    readonly outbox: Queue.Queue<string>
  ) {}

  get userId() {
    return this.principal.userId
  }

  get isClosing() {
    return this.closing
  }

  /** Queues a frame; a full outbox means the client fell too far behind: close 1013, it will replay. */
  push(frame: string): boolean {
    if (this.closing) return false
    if (Queue.unsafeOffer(this.outbox, frame)) return true
    this.close(CloseCode.TryAgainLater, "too far behind; reconnect and replay with after_seq")
    return false
  }

  close(code: CloseCode, reason: string) {
    if (this.closing) return
    this.closing = true
    if (this.ws.readyState === WebSocket.OPEN || this.ws.readyState === WebSocket.CONNECTING) {
      this.ws.close(code, reason)
    }
  }

  /** Drains the outbox into the socket, waiting for each batch to reach the kernel (backpressure). */
  readonly writer: Effect.Effect<never> = Effect.gen(this, function*() {
    while (true) {
      const batch = yield* Queue.takeBetween(this.outbox, 1, WRITE_BATCH)
      const written = yield* Effect.async<boolean>((resume) => {
        if (this.ws.readyState !== WebSocket.OPEN) return resume(Effect.succeed(false))
        let last = 0
        for (const frame of batch) {
          last++
          if (last < batch.length) this.ws.send(frame)
          else this.ws.send(frame, (error) => resume(Effect.succeed(error === undefined || error === null)))
        }
      })
      if (!written) return yield* Effect.never
    }
  })
}

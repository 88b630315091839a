/**
 * One client connection as the hub sees it: the socket, the principal, a
 * bounded outbox and a cursor per joined thread. Anything that writes to
 * the client goes through the outbox, so nothing outside the connection
 * ever blocks on its socket.
 *
 * The outbox needs no fiber: a push schedules one flush per tick, which
 * writes everything queued in one corked batch and waits for the socket to
 * take it (the last write's callback) before the next. A client that stops
 * reading therefore backs up into the outbox, and a full outbox closes it
 * with 1013; it reconnects and replays. An idle connection costs a few
 * objects, not a suspended fiber.
 */
import { Effect } from "effect"
import { randomUUID } from "node:crypto"
import type { Socket } from "node:net"
import { WebSocket } from "ws"
import type { Principal } from "../auth/Auth.ts"
import { CloseCode } from "../domain/Codes.ts"
import type { BrokerMessage } from "../eventlog/Broker.ts"
import type { HubCounters } from "../metrics/Metrics.ts"

/** Where a connection is in a thread's event stream. */
export interface ThreadCursor {
  /** The last seq sent to the client. */
  lastSeq: number
  /** Live events held back while the connection catches up from the event log; null when live. */
  pending: Array<BrokerMessage> | null
}

/** A frame: a string, or the bytes of a string already encoded once for every recipient. */
export type Frame = string | Buffer

const TEXT = { binary: false } as const

export class Connection {
  readonly id = randomUUID()
  readonly threads = new Map<string, ThreadCursor>()
  missedPongs = 0
  /** Token bucket of client frames, and how many frames in a row it has refused. */
  tokens = Number.POSITIVE_INFINITY
  refilledAt = 0
  refusedInARow = 0
  expiryTimer: ReturnType<typeof setTimeout> | undefined
  private closing = false
  private pendingClose: { readonly code: CloseCode; readonly reason: string } | undefined
  private queue: Array<Frame> = []
  private writing = false
  private scheduled = false
  private waiters: Array<() => void> = []

  constructor(
    readonly ws: WebSocket,
    /** Replaced when the client refreshes its token. */
    public principal: Principal,
    private readonly capacity: number,
    private readonly counters: HubCounters
  ) {}

  get userId() {
    return this.principal.userId
  }

  get isClosing() {
    return this.closing
  }

  /** Queues a frame; a full outbox means the client fell too far behind: close 1013, it will replay. */
  push(frame: Frame): boolean {
    if (this.closing) return false
    if (this.queue.length >= this.capacity) {
      this.counters.slowConsumerCloses++
      this.counters.eventsDropped += this.queue.length + 1
      this.close(CloseCode.TryAgainLater, "too far behind; reconnect and replay with after_seq")
      return false
    }
    this.queue.push(frame)
    this.schedule()
    return true
  }

  /** Queues a frame once there is room (replays wait instead of overflowing); a no-op once closing. */
  offer(frame: Frame): Effect.Effect<void> {
    return Effect.async<void>((resume) => {
      const attempt = () => {
        if (this.closing) {
          resume(Effect.void)
          return true
        }
        if (this.queue.length >= this.capacity) return false
        this.push(frame)
        resume(Effect.void)
        return true
      }
      if (attempt()) return
      const waiter = () => {
        if (!attempt()) this.waiters.push(waiter)
      }
      this.waiters.push(waiter)
      return Effect.sync(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter)
      })
    })
  }

  close(code: CloseCode, reason: string) {
    if (this.closing) return
    this.closing = true
    this.queue = []
    this.wake()
    if (this.ws.readyState === WebSocket.OPEN || this.ws.readyState === WebSocket.CONNECTING) {
      this.ws.close(code, reason)
    }
  }

  /** Closes the connection with 4001 when its token expires; re-armed by a refresh. */
  armExpiry(now: number) {
    clearTimeout(this.expiryTimer)
    this.expiryTimer = undefined
    if (this.principal.expiresAt._tag === "None") return
    // setTimeout cannot wait longer than 2^31 - 1 ms: a far expiry re-arms on the way.
    const wait = Math.min(this.principal.expiresAt.value - now, 2 ** 31 - 1)
    this.expiryTimer = setTimeout(() => {
      if (this.principal.expiresAt._tag === "Some" && this.principal.expiresAt.value <= Date.now()) {
        this.close(CloseCode.TokenExpired, "access token expired; reconnect with a fresh one")
      } else {
        this.armExpiry(Date.now())
      }
    }, Math.max(0, wait))
    // Not unref'd: Node keeps the list of an unref'd timer's duration after clearTimeout until that
    // duration elapses, and each connection's duration is distinct, so closed connections left one list
    // each behind for up to the token's lifetime. The open socket keeps the process alive anyway.
  }

  /** Closes once everything queued so far has been handed to the socket (shutdown: 1001 after the last events). */
  closeWhenFlushed(code: CloseCode, reason: string) {
    if (this.closing) return
    if (this.queue.length === 0 && !this.writing) return this.close(code, reason)
    this.pendingClose = { code, reason }
  }

  /** Called when the socket has closed, whoever closed it. */
  closed() {
    clearTimeout(this.expiryTimer)
    this.closing = true
    this.queue = []
    this.wake()
  }

  private wake() {
    const waiters = this.waiters
    this.waiters = []
    for (const waiter of waiters) waiter()
  }

  private schedule() {
    if (this.scheduled || this.writing) return
    this.scheduled = true
    queueMicrotask(this.flush)
  }

  private readonly flush = () => {
    this.scheduled = false
    if (this.writing || this.queue.length === 0 || this.closing) return
    if (this.ws.readyState !== WebSocket.OPEN) return
    const batch = this.queue
    this.queue = []
    this.writing = true
    this.counters.framesOut += batch.length
    this.counters.outboxDepth.observe(batch.length)
    const socket = (this.ws as unknown as { _socket?: Socket })._socket
    socket?.cork()
    const last = batch.length - 1
    for (let i = 0; i < last; i++) this.ws.send(batch[i]!, TEXT)
    this.ws.send(batch[last]!, TEXT, this.written)
    socket?.uncork()
    this.wake()
  }

  private readonly written = (error?: Error | null) => {
    this.writing = false
    if (error !== undefined && error !== null) return
    if (this.queue.length > 0) this.schedule()
    else if (this.pendingClose !== undefined) this.close(this.pendingClose.code, this.pendingClose.reason)
  }
}

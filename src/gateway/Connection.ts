/**
 * One client connection, its state and its behaviour together: the socket,
 * the principal and its token expiry, a bounded outbox, a cursor per
 * joined thread, the rate bucket of its frames and its heartbeat. Anything
 * that writes to the client goes through the outbox, so nothing outside
 * the connection ever blocks on its socket.
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
import type { Principal } from "../auth/Auth.ts"
import type { BrokerMessage } from "../eventlog/Broker.ts"
import type { HubCounters } from "../metrics/Metrics.ts"
import { CloseCode } from "../protocol/Codes.ts"
import type { ClientSocket, Frame } from "./Socket.ts"

/** Where a connection is in a thread's event stream. */
export interface ThreadCursor {
  /** The last seq sent to the client. */
  lastSeq: number
  /** Live events held back while the connection catches up from the event log; null when live. */
  pending: Array<BrokerMessage> | null
  /** Who the client was last told is online in the thread (the ack, then `presence` frames); none before the ack. */
  online?: ReadonlyArray<string>
}

export interface ConnectionLimits {
  /** Frames the outbox holds before the client counts as too far behind. */
  readonly outboxCapacity: number
  /** Sustained client frames per second (a token bucket)… */
  readonly framesPerSecond: number
  /** …how many may come at once… */
  readonly frameBurst: number
  /** …and how many refused in a row make it a flood. */
  readonly floodThreshold: number
}

/** What the rate bucket says of a client frame. */
export type Admission = "accepted" | "rate_limited" | "flooding"

export class Connection {
  readonly id = randomUUID()
  readonly threads = new Map<string, ThreadCursor>()
  private missedPongs = 0
  private tokens: number
  private refilledAt = 0
  private refusedInARow = 0
  private expiryTimer: ReturnType<typeof setTimeout> | undefined
  private closing = false
  private pendingClose: { readonly code: CloseCode; readonly reason: string } | undefined
  private queue: Array<Frame> = []
  private writing = false
  private scheduled = false
  private waiters: Array<() => void> = []

  constructor(
    readonly socket: ClientSocket,
    /** Replaced when the client refreshes its token. */
    public principal: Principal,
    private readonly limits: ConnectionLimits,
    private readonly counters: HubCounters
  ) {
    this.tokens = limits.frameBurst
  }

  get userId() {
    return this.principal.userId
  }

  get isClosing() {
    return this.closing
  }

  /** Closing, or to be closed once its outbox is written (a shutdown): told nothing new. */
  get isLeaving() {
    return this.closing || this.pendingClose !== undefined
  }

  /** Queues a frame; a full outbox means the client fell too far behind: close 1013, it will replay. */
  push(frame: Frame): boolean {
    if (this.closing) return false
    if (this.queue.length >= this.limits.outboxCapacity) {
      this.counters.slowConsumerCloses++
      this.counters.eventsDropped += this.queue.length + 1
      this.close(CloseCode.TryAgainLater, "too far behind; reconnect and replay with after_seq")
      return false
    }
    this.queue.push(frame)
    this.schedule()
    return true
  }

  /**
   * Queues a reply to the client's own request (welcome, ack, pong, error). Replies are bounded by the
   * inbox and the rate limit, not by the outbox: a replay that left the outbox full must not make the
   * next ack close a client that reads with 1013.
   */
  reply(frame: Frame) {
    if (this.closing) return
    this.queue.push(frame)
    this.schedule()
  }

  /** Queues a frame once there is room (replays wait instead of overflowing); a no-op once closing. */
  offer(frame: Frame): Effect.Effect<void> {
    return Effect.async<void>((resume) => {
      const attempt = () => {
        if (this.closing) {
          resume(Effect.void)
          return true
        }
        if (this.queue.length >= this.limits.outboxCapacity) return false
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
    this.socket.close(code, reason)
  }

  /** Takes a token from the bucket for a client frame; past the flood threshold the client is flooding. */
  admit(now: number): Admission {
    const elapsed = (now - this.refilledAt) / 1000
    this.refilledAt = now
    this.tokens = Math.min(this.limits.frameBurst, this.tokens + elapsed * this.limits.framesPerSecond)
    if (this.tokens >= 1) {
      this.tokens -= 1
      this.refusedInARow = 0
      return "accepted"
    }
    this.refusedInARow++
    return this.refusedInARow > this.limits.floodThreshold ? "flooding" : "rate_limited"
  }

  /** One heartbeat: a ping, or the end of a client that has not answered the last two. */
  heartbeat() {
    if (this.missedPongs >= 2) return this.socket.terminate()
    this.missedPongs++
    this.socket.ping()
  }

  pong() {
    this.missedPongs = 0
  }

  /** A refreshed token for the same user: a new expiry. */
  refresh(principal: Principal, now: number) {
    this.principal = principal
    this.armExpiry(now)
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
    if (!this.socket.isOpen()) return
    const batch = this.queue
    this.queue = []
    this.writing = true
    this.counters.framesOut += batch.length
    this.counters.outboxDepth.observe(batch.length)
    this.socket.send(batch, this.written)
    this.wake()
  }

  private readonly written = (error?: Error | null) => {
    this.writing = false
    if (error !== undefined && error !== null) return
    if (this.queue.length > 0) this.schedule()
    else if (this.pendingClose !== undefined) this.close(this.pendingClose.code, this.pendingClose.reason)
  }
}

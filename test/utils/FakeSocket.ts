/**
 * A `ClientSocket` for unit tests of the gateway core (Connection, Hub,
 * Session) without the `ws` library: it records what the core does to it,
 * and can play a client that stops reading by holding back the `written`
 * callbacks until the test releases them.
 */
import { Effect } from "effect"
import type { ClientSocket, Frame } from "../../src/gateway/Socket.ts"

/** A frame as the client would see it, parsed. */
export type Sent = Record<string, any>

export interface CloseCall {
  readonly code: number
  readonly reason: string
  /** How many frames had been sent when it was called, so a test can tell what came before it. */
  readonly afterFrames: number
}

export class FakeSocket implements ClientSocket {
  /** Every frame sent while open, parsed, in order. */
  readonly frames: Array<Sent> = []
  /** The size of each `send`: one batch per flush. */
  readonly batches: Array<number> = []
  /** Every `close` call, even those a closed socket ignores: a second one would be a bug worth seeing. */
  readonly closes: Array<CloseCall> = []
  pings = 0
  terminated = false
  /** Sends attempted once closed; the core checks `isOpen` first, so this should stay 0. */
  sendsAfterClose = 0
  /** Runs once the socket has closed, as the adapter's `close` event does; tests wire it to the session. */
  onClosed: ((code: number) => void) | undefined
  private open = true
  private holding = false
  private held: Array<(error?: Error | null) => void> = []

  readonly send = (frames: ReadonlyArray<Frame>, written: (error?: Error | null) => void) => {
    if (!this.open) {
      this.sendsAfterClose++
      setImmediate(() => written(new Error("socket closed")))
      return
    }
    for (const frame of frames) this.frames.push(JSON.parse(typeof frame === "string" ? frame : frame.toString("utf8")))
    this.batches.push(frames.length)
    // A real socket reports the write on a later turn of the event loop, never inside `send`.
    if (this.holding) this.held.push(written)
    else setImmediate(() => written())
  }

  readonly close = (code: number, reason: string) => {
    this.closes.push({ code, reason, afterFrames: this.frames.length })
    this.end(code)
  }

  readonly terminate = () => {
    this.terminated = true
    this.end(1006)
  }

  readonly ping = () => {
    this.pings++
  }

  readonly isOpen = () => this.open

  /** From now on the client stops reading: writes are taken but never reported written. */
  hold() {
    this.holding = true
  }

  /** The client reads again: every held write is reported, and later ones as they come. */
  release() {
    this.holding = false
    const held = this.held
    this.held = []
    for (const written of held) written()
  }

  /** The frames of one `type` (and, for events, of one thread). */
  ofType(type: string, threadId?: string): Array<Sent> {
    return this.frames.filter((f) => f.type === type && (threadId === undefined || f.thread_id === threadId))
  }

  /** The seqs of the events received of one thread, in the order received. */
  seqs(threadId: string): Array<number> {
    return this.ofType("event", threadId).map((f) => f.seq as number)
  }

  private end(code: number) {
    if (!this.open) return
    this.open = false
    const onClosed = this.onClosed
    if (onClosed !== undefined) setImmediate(() => onClosed(code))
  }
}

/** Waits `ms` of real time, whatever clock the test runs on: flushes and write callbacks run meanwhile. */
export const pause = (ms = 5) => Effect.promise(() => new Promise<void>((resolve) => setTimeout(resolve, ms)))

/** Polls on real time (TestClock or not) until `check` holds; dies naming `what` after `timeoutMs`. */
export const eventually = (what: string, check: () => boolean, timeoutMs = 3_000): Effect.Effect<void> =>
  Effect.suspend(() => {
    const deadline = Date.now() + timeoutMs
    const loop: Effect.Effect<void> = Effect.suspend(() => {
      if (check()) return Effect.void
      if (Date.now() > deadline) return Effect.dieMessage(`timed out waiting until ${what}`)
      return Effect.zipRight(pause(2), loop)
    })
    return loop
  })

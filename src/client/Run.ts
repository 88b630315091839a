/**
 * One run, as its sender sees it: its events in order (an async iterable
 * any number of times over, or a Stream), `done` (the terminal event) and
 * `cancel()`. A queued message's run has no `runId` until its
 * `agent_started` names the message.
 */
import { identity, Stream } from "effect"
import { ClientClosed } from "./Errors.ts"
import type { TerminalEvent, ThreadEvent } from "./Types.ts"

export interface RunHost {
  readonly cancelRun: (runId: string) => Promise<void>
}

const isTerminal = (event: ThreadEvent): event is TerminalEvent =>
  event.event_type === "agent_completed" || event.event_type === "agent_error"

export class Run implements AsyncIterable<ThreadEvent> {
  /** The run's events received so far, in `seq` order. */
  readonly received: Array<ThreadEvent> = []
  /** The terminal event, once received. */
  terminal: TerminalEvent | undefined
  /** Resolves with the run's terminal event (`agent_completed` or `agent_error`); rejects if the client closes first. */
  readonly done: Promise<TerminalEvent>
  private resolveDone!: (event: TerminalEvent) => void
  private rejectDone!: (error: Error) => void
  private failure: Error | undefined
  private readonly wakers = new Set<() => void>()
  private readonly started: Promise<string>
  private resolveStarted!: (runId: string) => void

  constructor(
    private readonly host: RunHost,
    readonly threadId: string,
    readonly messageId: string,
    /** Null while the message waits in the thread's queue (`on_busy: "enqueue"`). */
    public runId: string | null,
    /** True when the message was queued behind other runs. */
    readonly queued: boolean
  ) {
    this.done = new Promise<TerminalEvent>((resolve, reject) => {
      this.resolveDone = resolve
      this.rejectDone = reject
    })
    // Handled here so a run nobody awaits never makes an unhandled rejection; awaiting it still rejects.
    this.done.catch(() => {})
    this.started = new Promise((resolve) => this.resolveStarted = resolve)
    if (runId !== null) this.resolveStarted(runId)
  }

  /** @internal The thread names the run once its `agent_started` arrives (queued messages). */
  start(runId: string) {
    if (this.runId === null) this.runId = runId
    this.resolveStarted(runId)
  }

  /** @internal */
  push(event: ThreadEvent) {
    if (this.terminal !== undefined || this.failure !== undefined) return
    this.received.push(event)
    if (isTerminal(event)) {
      this.terminal = event
      this.resolveDone(event)
    }
    this.wake()
  }

  /** @internal The client closed before the run ended. */
  fail(error: Error) {
    if (this.terminal !== undefined || this.failure !== undefined) return
    this.failure = error
    this.rejectDone(error)
    this.wake()
  }

  private wake() {
    for (const wake of [...this.wakers]) wake()
  }

  /** Asks the server to cancel the run; resolves once the cancel is acknowledged (`done` then has `agent_error` `cancelled`). */
  async cancel(): Promise<void> {
    if (this.terminal !== undefined) return
    const runId = await Promise.race([this.started, this.done.then(() => undefined, () => undefined)])
    if (runId === undefined || this.terminal !== undefined) return
    try {
      await this.host.cancelRun(runId)
    } catch (error) {
      // The run ended meanwhile: nothing is left to cancel.
      if (this.terminal === undefined) throw error
    }
  }

  /** The run's events from its first, ending with its terminal event. */
  [Symbol.asyncIterator](): AsyncIterator<ThreadEvent> {
    let index = 0
    return {
      next: async () => {
        for (;;) {
          if (index < this.received.length) return { done: false, value: this.received[index++]! }
          if (this.terminal !== undefined) return { done: true, value: undefined }
          if (this.failure !== undefined) throw this.failure
          await new Promise<void>((resolve) => {
            const wake = () => {
              this.wakers.delete(wake)
              resolve()
            }
            this.wakers.add(wake)
          })
        }
      },
      return: async () => ({ done: true, value: undefined })
    }
  }

  /** The same events, as an async iterable value. */
  get events(): AsyncIterable<ThreadEvent> {
    return this
  }

  /** The same events as an Effect Stream, failing with `ClientClosed` if the client closes first. */
  get stream(): Stream.Stream<ThreadEvent, ClientClosed> {
    return Stream.fromAsyncIterable(this, identity).pipe(
      Stream.catchAll((error) => error instanceof ClientClosed ? Stream.fail(error) : Stream.die(error))
    )
  }
}

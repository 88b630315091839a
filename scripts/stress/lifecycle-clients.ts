/**
 * The lifecycle scenario's clients: each a user whose connection dies with
 * every killed server and who reconnects to the next one, rejoining each of
 * its threads with `after_seq` = the last seq it kept, so that its stream
 * of a thread is one stream across all the server processes.
 */
import { Effect } from "effect"
import { testToken } from "../../layers/Test.ts"
import type { EventFrame } from "../../test/utils/ChatClient.ts"
import { ConnectionLost, StressClient } from "./client.ts"
import { type Budget, errorMessage, sleep, waitUntil } from "./common.ts"
import type { ServerProcess } from "./lifecycle-process.ts"
import { isTerminal, ThreadTrack } from "./tracks.ts"

const signed = (userId: string) => Effect.runPromise(testToken(userId))

/** The server process that is up, if any: between a kill and the restart, clients wait for the next. */
export class Epoch {
  server: ServerProcess | undefined
  private waiters: Array<(server: ServerProcess) => void> = []

  up(server: ServerProcess) {
    this.server = server
    for (const waiter of this.waiters.splice(0)) waiter(server)
  }

  down() {
    this.server = undefined
  }

  current(): Promise<ServerProcess> {
    const server = this.server
    return server !== undefined ? Promise.resolve(server) : new Promise((resolve) => this.waiters.push(resolve))
  }
}

export interface Thread {
  readonly id: string
  readonly index: number
  /** Seq to event id, shared by every client of the thread. */
  readonly canonical: Map<number, string>
}

export interface ThreadState extends Thread {
  readonly owner: Member
  /** The run going, as its owner saw it (from the send's ack, or the stream), and its open tool calls. */
  open: string | undefined
  readonly openTools: Set<string>
  readonly startSeq: Map<string, number>
  /** The owner's last seq at the last restart, and the runs started after it that completed. */
  mark: number
  completedAfterMark: number
}

export const newThread = (id: string, index: number, owner: Member): ThreadState => ({
  id,
  index,
  canonical: new Map(),
  owner,
  open: undefined,
  openTools: new Set(),
  startSeq: new Map(),
  mark: 0,
  completedAfterMark: 0
})

/** The runs whose terminal event has arrived, and waits for the others'. */
export class RunEnds {
  readonly ended = new Set<string>()
  private readonly waiters = new Map<string, () => void>()

  end(runId: string) {
    this.ended.add(runId)
    this.waiters.get(runId)?.()
  }

  until(runId: string, timeoutMs: number): Promise<void> {
    if (this.ended.has(runId)) return Promise.resolve()
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters.delete(runId)
        reject(new Error(`run ${runId} did not end within ${timeoutMs} ms`))
      }, timeoutMs)
      this.waiters.set(runId, () => {
        clearTimeout(timer)
        this.waiters.delete(runId)
        resolve()
      })
    })
  }
}

/** Follows the run going in a thread through its owner's stream (each event once). */
export const follow = (thread: ThreadState, event: EventFrame, ends: RunEnds) => {
  const runId = event.run_id
  if (runId === null) return
  if (event.event_type === "agent_started") {
    thread.open = runId
    thread.openTools.clear()
    thread.startSeq.set(runId, event.seq)
  } else if (event.event_type === "tool_executing") thread.openTools.add(event.data.tool_call_id)
  else if (event.event_type === "tool_completed") thread.openTools.delete(event.data.tool_call_id)
  else if (isTerminal(event)) {
    if (thread.open === runId) thread.open = undefined
    thread.openTools.clear()
    if (event.event_type === "agent_completed" && (thread.startSeq.get(runId) ?? 0) > thread.mark) {
      thread.completedAfterMark++
    }
    ends.end(runId)
  }
}

export class Member {
  connection: StressClient | undefined
  readonly tracks = new Map<string, ThreadTrack>()
  threads: ReadonlyArray<Thread> = []
  connections = 0
  /** Connections that closed while their server was up: only a kill should close one. */
  unexpectedCloses = 0
  foreign = 0
  /** Frames that were not JSON objects with a `type`, over every closed connection. */
  unreadable = 0
  /** Reconnects that failed and were tried again, and why the first did. */
  retries = 0
  firstRetry: string | undefined
  private attaching: Promise<StressClient> | undefined

  /**
   * `fromStart`: the first join asks for the whole thread (`after_seq` 0), else only live events (a late
   * join). `onEvent` gets each event with whether it is new to this member's stream.
   */
  constructor(
    readonly user: string,
    private readonly epoch: Epoch,
    private readonly budget: Budget,
    private readonly fromStart: boolean,
    private readonly onEvent: (event: EventFrame, fresh: boolean) => void
  ) {}

  /** An open connection, joined to every thread and caught up with what each held when it joined. */
  ready(): Promise<StressClient> {
    if (this.connection?.open === true) return Promise.resolve(this.connection)
    this.attaching ??= this.attach().finally(() => this.attaching = undefined)
    return this.attaching
  }

  private async attach(): Promise<StressClient> {
    for (let attempt = 1;; attempt++) {
      this.budget.check(`reconnecting ${this.user}`)
      const server = await this.epoch.current()
      let client: StressClient | undefined
      try {
        const opened = await StressClient.connect(server.wsUrl, await signed(this.user), this.budget.timeout(20_000))
        client = opened
        this.connections++
        opened.ws.once("close", () => {
          this.unreadable += opened.unreadable
          if (this.epoch.server === server && !opened.retired) this.unexpectedCloses++
        })
        client.onEvent = (event) => {
          const track = this.tracks.get(event.thread_id)
          if (track === undefined) return void this.foreign++
          this.onEvent(event, track.accept(event))
        }
        const joined = client
        const heads = await Promise.all(this.threads.map((thread) => {
          const track = this.tracks.get(thread.id)
          const after = track?.last ?? (this.fromStart ? 0 : undefined)
          return joined.request(
            { type: "join_thread", thread_id: thread.id, ...(after === undefined ? {} : { after_seq: after }) },
            // A connection's requests are served one at a time, each behind the database's queue.
            this.budget.timeout(90_000),
            (ack) => {
              if (!this.tracks.has(thread.id)) {
                this.tracks.set(thread.id, new ThreadTrack(thread.canonical, after ?? ack.head_seq))
              }
            }
          ).then((ack) => ack.head_seq as number)
        }))
        const caughtUp = () => this.threads.every((t, i) => this.tracks.get(t.id)!.last >= heads[i]!)
        await waitUntil(this.budget, 30_000, () => caughtUp() || !joined.open)
        if (!joined.open) throw new ConnectionLost("closed while catching up")
        if (!caughtUp()) throw new Error(`${this.user} did not catch up with the replay`)
        this.connection = joined
        return joined
      } catch (error) {
        this.retries++
        this.firstRetry ??= `${this.user}: ${errorMessage(error)}`
        client?.terminate()
        // A kill while it reconnected sends it to the next server; anything else gets a few tries.
        if (attempt >= 5 && this.epoch.server === server) throw error
        await sleep(100)
      }
    }
  }
}

/**
 * The load generator's connections: opened with bounded concurrency and
 * deadlines, joined to threads, and counted. An event frame is recognised
 * by its first bytes; only what a workload needs is read from it (`seq`
 * for replay checks, `t` for latency). Other frames (welcome, ack, error)
 * are rare and parsed as JSON.
 */
import { now, sleep, type WireProtocol, withDeadline } from "./common.ts"
import { WireConnection } from "./wire.ts"

const EVENT_PREFIX = Buffer.from("{\"type\":\"event\"")
const SEQ_KEY = Buffer.from("\"seq\":")

/** The number after `key` in bytes [start, end), or NaN. */
export const numberAfter = (buf: Buffer, key: Buffer, start: number, end: number): number => {
  const at = buf.indexOf(key, start)
  if (at < 0 || at >= end) return Number.NaN
  const from = at + key.length
  let to = from
  while (to < end && buf[to] !== 0x2c && buf[to] !== 0x7d) to++
  return Number(buf.toString("latin1", from, to))
}

export class Client {
  connection: WireConnection | undefined
  events = 0
  lastSeq = 0
  /** Caught up once lastSeq reaches this (replay workloads). */
  wantSeq = Number.POSITIVE_INFINITY
  gaps = 0
  welcomed = false
  dropped = false
  threadId: string | undefined
  onWelcome: (() => void) | undefined
}

export interface OpenResult {
  readonly clients: ReadonlyArray<Client>
  readonly failed: number
  readonly elapsedMs: number
  /** Per connection, from connect() to the welcome frame. */
  readonly setupMs: ReadonlyArray<number>
}

export class Pool {
  readonly clients: Array<Client> = []
  totalEvents = 0
  caughtUp = 0
  errorFrames = 0
  unexpectedCloses = 0
  failures = 0
  readonly errors: Array<string> = []
  trackSeq = false
  onEvent: ((buf: Buffer, start: number, end: number) => void) | undefined
  /** Every event frame with the client it came to (the agent workload tells its watchers apart). */
  onClientEvent: ((client: Client, buf: Buffer, start: number, end: number) => void) | undefined
  private check: (() => void) | undefined
  private nextRef = 0
  private readonly acks = new Map<string, (reply: Record<string, any>) => void>()

  constructor(
    private readonly port: number,
    private readonly token: string,
    private readonly protocol: WireProtocol = "agent-chat"
  ) {}

  noteError(what: unknown) {
    this.failures++
    if (this.errors.length < 5) this.errors.push(String(what))
  }

  private event(client: Client, buf: Buffer, start: number, end: number) {
    client.events++
    this.totalEvents++
    if (this.trackSeq) {
      const seq = numberAfter(buf, SEQ_KEY, start, end)
      if (seq !== client.lastSeq + 1) client.gaps++
      client.lastSeq = Math.max(client.lastSeq, seq)
      if (client.lastSeq === client.wantSeq) this.caughtUp++
    }
    if (this.onEvent !== undefined) this.onEvent(buf, start, end)
    if (this.onClientEvent !== undefined) this.onClientEvent(client, buf, start, end)
    if (this.check !== undefined) this.check()
  }

  private frame(client: Client, buf: Buffer, start: number, end: number) {
    if (
      end - start > EVENT_PREFIX.length &&
      buf.compare(EVENT_PREFIX, 0, EVENT_PREFIX.length, start, start + EVENT_PREFIX.length) === 0
    ) {
      return this.event(client, buf, start, end)
    }
    const frame = JSON.parse(buf.toString("utf8", start, end)) as Record<string, any>
    if (frame.type === "event") return this.event(client, buf, start, end)
    if (frame.type === "welcome") {
      client.welcomed = true
      client.onWelcome?.()
    } else if ((frame.type === "ack" || frame.type === "error") && typeof frame.ref === "string") {
      if (frame.type === "error") this.errorFrames++
      this.acks.get(frame.ref)?.(frame)
      this.acks.delete(frame.ref)
    } else if (frame.type === "error") {
      this.errorFrames++
    }
  }

  /** Opens one connection and waits for its welcome frame. */
  connect(client = new Client(), timeoutMs = 30_000): Promise<Client> {
    const welcome = new Promise<void>((resolve) => client.onWelcome = resolve)
    const open = WireConnection.open(this.port, this.token, {
      onText: (buf, start, end) => this.frame(client, buf, start, end),
      onClose: () => {
        if (!client.dropped) this.unexpectedCloses++
      }
    }, this.protocol).then(async (connection) => {
      client.connection = connection
      await welcome
      return client
    })
    return withDeadline(open, timeoutMs, "connection setup")
  }

  /** Opens `n` connections, at most `concurrency` at a time, within `timeoutMs`. */
  async open(n: number, concurrency: number, timeoutMs = 120_000): Promise<OpenResult> {
    const started = now()
    const deadline = started + timeoutMs
    const opened: Array<Client> = []
    const setupMs: Array<number> = []
    let next = 0
    let failed = 0
    const worker = async () => {
      while (next < n && now() < deadline) {
        next++
        const t0 = now()
        try {
          const client = await this.connect(new Client(), Math.max(1, deadline - t0))
          setupMs.push(now() - t0)
          opened.push(client)
        } catch (error) {
          failed++
          this.noteError(error)
        }
      }
    }
    await Promise.all(Array.from({ length: Math.min(concurrency, n) }, worker))
    this.clients.push(...opened)
    return { clients: opened, failed: failed + (n - next), elapsedMs: now() - started, setupMs }
  }

  /** Sends a request frame and resolves with its ack (rejects on an error reply or the deadline). */
  request(client: Client, frame: Record<string, unknown>, timeoutMs = 30_000): Promise<Record<string, any>> {
    const ref = ++this.nextRef
    const id = `r${ref}`
    const reply = new Promise<Record<string, any>>((resolve, reject) => {
      this.acks.set(id, (answer) => answer.type === "ack" ? resolve(answer) : reject(new Error(answer.message)))
    })
    client.connection?.request(String(frame.type), JSON.stringify({ ...frame, id }), ref)
    return withDeadline(reply, timeoutMs, `${String(frame.type)} reply`).finally(() => this.acks.delete(id))
  }

  /** Joins a thread; without `afterSeq` the client starts live at the head. */
  async join(client: Client, threadId: string, afterSeq?: number, timeoutMs?: number) {
    client.threadId = threadId
    if (afterSeq !== undefined) client.lastSeq = afterSeq
    const ack = await this.request(
      client,
      afterSeq === undefined
        ? { type: "join_thread", thread_id: threadId }
        : { type: "join_thread", thread_id: threadId, after_seq: afterSeq },
      timeoutMs
    )
    if (afterSeq === undefined) client.lastSeq = Number(ack.head_seq)
    return Number(ack.head_seq)
  }

  /** Resolves once `done()` holds (checked after every event), rejects after `timeoutMs`. */
  waitFor(done: () => boolean, timeoutMs: number, what: string): Promise<void> {
    if (done()) return Promise.resolve()
    const reached = new Promise<void>((resolve) => {
      this.check = () => {
        if (done()) {
          this.check = undefined
          resolve()
        }
      }
    })
    return withDeadline(reached, timeoutMs, what).finally(() => this.check = undefined)
  }

  /** Drops every connection at once, without a close handshake. */
  dropAll() {
    for (const client of this.clients) {
      client.dropped = true
      client.connection?.destroy()
    }
  }

  async closeAll() {
    this.dropAll()
    this.clients.length = 0
    await sleep(50)
  }
}

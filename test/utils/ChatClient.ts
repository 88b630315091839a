/**
 * A wire-level client of the protocol for Node (on `ws`), used by the
 * tests and the stress scripts: it sends any frame, well-formed or not, and
 * keeps every frame it receives. Applications use the typed SDK of
 * src/client (`agent-chat/client`) instead. It decodes every frame it
 * receives with the protocol's Schemas (src/protocol) and keeps them all,
 * so callers can wait for what they expect with a deadline instead of
 * sleeping. A frame the Schemas do
 * not know (a later addition, or a server bug) is kept too, and listed in
 * `undecoded` with why.
 */
import { Either, ParseResult, Schema } from "effect"
import WebSocket from "ws"
import { ServerFrame as ServerFrameSchema } from "../../src/protocol/ServerFrames.ts"

export interface EventFrame {
  readonly type: "event"
  readonly event_type: string
  readonly event_id: string
  readonly thread_id: string
  readonly run_id: string | null
  readonly seq: number
  readonly timestamp: string
  readonly data: Record<string, any>
}

export type ServerFrame =
  | {
    readonly type: "welcome"
    readonly protocol: number
    readonly connection_id: string
    readonly user_id: string
    readonly heartbeat_ms: number
    readonly server_time: string
  }
  | { readonly type: "pong"; readonly ref?: string }
  | { readonly type: "ack"; readonly ref: string; readonly [field: string]: unknown }
  | { readonly type: "error"; readonly ref?: string; readonly code: string; readonly message: string }
  | { readonly type: "presence"; readonly thread_id: string; readonly online: ReadonlyArray<string> }
  | EventFrame

export interface CloseInfo {
  readonly code: number
  readonly reason: string
}

export class RequestFailed extends Error {
  constructor(readonly code: string, message: string) {
    super(`${code}: ${message}`)
  }
}

export interface ConnectOptions {
  readonly token?: string
  /** Send the token as `Authorization: Bearer` (default) or as `?token=`. */
  readonly tokenIn?: "header" | "query"
  readonly headers?: Record<string, string>
  readonly wsOptions?: WebSocket.ClientOptions
}

let nextId = 0

const decodeServerFrame = Schema.decodeUnknownEither(ServerFrameSchema)

export class ChatClient {
  readonly frames: Array<ServerFrame> = []
  /** Frames that did not decode, with the decoder's reason. */
  readonly undecoded: Array<{ readonly frame: unknown; readonly reason: string }> = []
  closed: CloseInfo | undefined
  private waiters = new Set<() => void>()

  private constructor(readonly ws: WebSocket) {
    ws.on("message", (data) => {
      const frame: unknown = JSON.parse(data.toString())
      const decoded = decodeServerFrame(frame)
      if (Either.isLeft(decoded)) {
        this.undecoded.push({ frame, reason: ParseResult.TreeFormatter.formatErrorSync(decoded.left) })
      }
      this.frames.push(frame as ServerFrame)
      this.notify()
    })
    ws.on("close", (code, reason) => {
      this.closed = { code, reason: reason.toString() }
      this.notify()
    })
    ws.on("error", () => {})
  }

  /** Opens a connection; resolves once the server has upgraded it, rejects with the HTTP refusal otherwise. */
  static connect(url: string, options: ConnectOptions = {}): Promise<ChatClient> {
    const target = new URL(url)
    const headers: Record<string, string> = { ...options.headers }
    if (options.token !== undefined) {
      if (options.tokenIn === "query") target.searchParams.set("token", options.token)
      else headers.authorization = `Bearer ${options.token}`
    }
    const ws = new WebSocket(target, { headers, ...options.wsOptions })
    const client = new ChatClient(ws)
    return new Promise((resolve, reject) => {
      ws.once("open", () => resolve(client))
      ws.once("unexpected-response", (_request, response) => {
        let body = ""
        response.on("data", (chunk: Buffer) => body += chunk.toString())
        response.on("end", () => reject(new UpgradeRefused(response.statusCode ?? 0, body)))
      })
      ws.once("error", reject)
    })
  }

  private notify() {
    for (const waiter of this.waiters) waiter()
  }

  send(frame: Record<string, unknown> | string) {
    this.ws.send(typeof frame === "string" ? frame : JSON.stringify(frame))
  }

  /** Waits until a received frame satisfies `predicate` (checking those already received too). */
  waitFor<F extends ServerFrame>(
    predicate: (frame: ServerFrame) => frame is F,
    timeoutMs?: number
  ): Promise<F>
  waitFor(predicate: (frame: ServerFrame) => boolean, timeoutMs?: number): Promise<ServerFrame>
  waitFor(predicate: (frame: ServerFrame) => boolean, timeoutMs = 10_000): Promise<ServerFrame> {
    return this.until(() => this.frames.find(predicate), timeoutMs, "frame")
  }

  /** Waits for the socket to close. */
  waitClose(timeoutMs = 10_000): Promise<CloseInfo> {
    return this.until(() => this.closed, timeoutMs, "close")
  }

  until<A>(check: () => A | undefined, timeoutMs: number, what: string): Promise<A> {
    return new Promise((resolve, reject) => {
      const attempt = () => {
        const found = check()
        if (found === undefined) return false
        clearTimeout(timer)
        this.waiters.delete(waiter)
        resolve(found)
        return true
      }
      const waiter = () => void attempt()
      const timer = setTimeout(() => {
        this.waiters.delete(waiter)
        reject(new Error(`no ${what} within ${timeoutMs} ms; last frames: ${JSON.stringify(this.frames.slice(-5))}`))
      }, timeoutMs)
      if (!attempt()) this.waiters.add(waiter)
    })
  }

  /** Sends a request frame with a fresh id; resolves with its ack, rejects with its error. */
  async request(frame: Record<string, unknown>, timeoutMs?: number): Promise<Record<string, any>> {
    const id = `r${++nextId}`
    this.send({ ...frame, id })
    const reply = await this.waitFor((f) => (f.type === "ack" || f.type === "error") && f.ref === id, timeoutMs)
    if (reply.type === "error") throw new RequestFailed(reply.code, reply.message)
    return reply as Record<string, any>
  }

  /** Events received for a thread, in arrival order. */
  events(threadId?: string): Array<EventFrame> {
    return this.frames.filter((f): f is EventFrame =>
      f.type === "event" && (threadId === undefined || f.thread_id === threadId)
    )
  }

  /** Waits for the terminal event of a run. */
  waitRunEnd(runId: string, timeoutMs?: number): Promise<EventFrame> {
    return this.waitFor(
      (f): f is EventFrame =>
        f.type === "event" && f.run_id === runId &&
        (f.event_type === "agent_completed" || f.event_type === "agent_error"),
      timeoutMs
    )
  }

  close(code = 1000) {
    this.ws.close(code)
  }
}

export class UpgradeRefused extends Error {
  readonly body: Record<string, any>
  constructor(readonly status: number, text: string) {
    super(`upgrade refused with ${status}: ${text}`)
    let body: Record<string, any> = {}
    try {
      body = JSON.parse(text)
    } catch {
      body = { raw: text }
    }
    this.body = body
  }
}

/**
 * The typed client of the wire protocol (docs/PROTOCOL.md), for Node and
 * browsers. It keeps one connection up: on a drop it reconnects with
 * jittered exponential backoff and rejoins every joined thread after the
 * last `seq` it delivered, so each thread's events arrive exactly once and
 * in order. Requests are matched to their replies by id, each with a
 * timeout. The token provider is asked for a fresh token ahead of the
 * JWT's `exp` (sent as `refresh_token`) and after a close 4001 (then used
 * to reconnect).
 */
import { Either, identity, Schema, Stream } from "effect"
import { ClientFrame, describe } from "../protocol/ClientFrames.ts"
import { CloseCode } from "../protocol/Codes.ts"
import type { ServerFrame } from "../protocol/ServerFrames.ts"
import { decodeServerFrame } from "./Decode.ts"
import { ClientClosed, ConnectError, ConnectionLost, RequestError, RequestTimeout } from "./Errors.ts"
import { Listeners } from "./Feed.ts"
import {
  messageText,
  type SocketFactory,
  socketFactory,
  type WebSocketConstructor,
  type WebSocketLike
} from "./Socket.ts"
import { Thread, type ThreadHost } from "./Thread.ts"
import { expiryOf, refreshDelay } from "./Token.ts"
import type { Ack, ClientEvent, Request, ThreadUpdate, TokenProvider, TokenReason, Welcome } from "./Types.ts"

export interface ReconnectOptions {
  /** The first delay; each attempt doubles it, up to `maxDelayMs`; each delay is jittered to between half and all of it. */
  readonly initialDelayMs?: number
  readonly maxDelayMs?: number
  /** Attempts in a row before the client gives up and closes; unlimited by default. */
  readonly maxAttempts?: number
}

export interface ClientOptions {
  /** The server's WebSocket endpoint, e.g. `wss://chat.example.com/ws`. */
  readonly url: string
  /** The access token, or a function that returns a fresh one (called ahead of expiry and after a close 4001). */
  readonly token: string | TokenProvider
  /** The WebSocket constructor; by default the global `WebSocket`, else the `ws` package (Node 20). */
  readonly WebSocket?: WebSocketConstructor
  /** With `ws`, the token goes in `Authorization` (`header`, default) or in `?token=`; other sockets always use the query. */
  readonly tokenIn?: "header" | "query"
  /** How long a request waits for its reply, in milliseconds (10 s by default). */
  readonly requestTimeoutMs?: number
  /** How long a connection attempt waits for `welcome` (10 s by default). */
  readonly connectTimeoutMs?: number
  /** How long before the token's `exp` to refresh it (30 s by default; half its remaining life for a shorter token). */
  readonly refreshAheadMs?: number
  /** Reconnection after a drop; `false` to never reconnect. */
  readonly reconnect?: ReconnectOptions | false
  /**
   * How often to ping the server when nothing else proves the connection alive (the `welcome`'s
   * `heartbeat_ms` by default; 0 never). A ping unanswered within the request timeout drops the
   * connection, which then reconnects: a network gone silent is noticed without waiting for TCP.
   */
  readonly pingIntervalMs?: number
}

export type ConnectionState = "connecting" | "open" | "reconnecting" | "closed"

interface Pending {
  readonly name: string
  readonly text: string
  /** Sent again after a reconnect when the connection dropped before its reply (it is safe to repeat). */
  readonly repeatable: boolean
  readonly resolve: (frame: ServerFrame) => void
  readonly reject: (error: Error) => void
  timer: ReturnType<typeof setTimeout> | undefined
  sentOn: WebSocketLike | undefined
}

export interface JoinOptions {
  /** Replay the events after this `seq` (0, the default: the whole thread). */
  readonly afterSeq?: number
}

export interface CreateThreadOptions {
  readonly title?: string
  readonly members?: ReadonlyArray<string>
}

const validate = Schema.decodeUnknownEither(ClientFrame)
/** Close codes after which reconnecting would only repeat the fault (PROTOCOL.md section 4). */
const final: ReadonlySet<number> = new Set([
  CloseCode.Normal,
  CloseCode.InvalidPayload,
  CloseCode.PolicyViolation,
  CloseCode.MessageTooBig
])
const repeatable: ReadonlySet<string> = new Set([
  "ping",
  "join_thread",
  "leave_thread",
  "add_members",
  "remove_members"
])

export class AgentChatClient {
  state: ConnectionState = "connecting"
  /** The `welcome` of the current (or last) connection. */
  welcome: Welcome | undefined
  /** The threads joined, by id. */
  readonly threads = new Map<string, Thread>()
  private readonly listeners = new Listeners<ClientEvent>()
  private readonly pending = new Map<string, Pending>()
  private readonly queue: Array<string> = []
  private socket: WebSocketLike | undefined
  private welcomed = false
  private token: string | undefined
  private tokenExpiry: number | undefined
  private attempts = 0
  private nextId = 0
  private refreshTimer: ReturnType<typeof setTimeout> | undefined
  private watchdog: ReturnType<typeof setTimeout> | undefined
  private sleeping: { readonly timer: ReturnType<typeof setTimeout>; readonly wake: () => void } | undefined
  private attemptEnded: ((error: Error | undefined) => void) | undefined
  private closeInfo: { readonly code: number; readonly reason: string } | undefined
  private readonly threadHost: ThreadHost

  private constructor(private readonly options: ClientOptions, private readonly factory: SocketFactory) {
    this.threadHost = {
      request: (frame, requestOptions) => this.request(frame, requestOptions),
      cancelRun: async (runId) => void await this.request({ type: "cancel_run", run_id: runId }),
      resync: (thread) => this.rejoin(thread),
      leave: (thread) => this.leave(thread),
      emit: (update: ThreadUpdate) => this.listeners.emit(update),
      userId: () => this.welcome?.user_id
    }
  }

  /** Connects; resolves once the server's `welcome` arrived, rejects with `ConnectError` if the first attempt fails. */
  static async connect(options: ClientOptions): Promise<AgentChatClient> {
    const client = new AgentChatClient(options, await socketFactory(options.WebSocket, options.tokenIn))
    try {
      await client.attempt("connect")
    } catch (error) {
      client.finish(error instanceof ConnectError ? error.code : 1006, "the first connection failed")
      throw error instanceof ConnectError ? error : new ConnectError(1006, String(error))
    }
    return client
  }

  /** The user id of the token, as the server's `welcome` said. */
  get userId(): string {
    return this.welcome?.user_id ?? ""
  }

  /** Listens to every thread update and connection change; returns the unsubscribe. */
  on(listener: (event: ClientEvent) => void): () => void {
    return this.listeners.add(listener)
  }

  /** Every client event from now on, until the client closes. */
  events(): AsyncIterableIterator<ClientEvent> {
    return this.listeners.iterate()
  }

  /** Every client event from when the stream runs, as an Effect Stream that ends when the client closes. */
  get stream(): Stream.Stream<ClientEvent> {
    return Stream.fromAsyncIterable({ [Symbol.asyncIterator]: () => this.listeners.iterate() }, identity).pipe(
      Stream.orDie
    )
  }

  /**
   * Sends a request with a fresh id; resolves with its ack, rejects with `RequestError` (the server's
   * error, or a frame the protocol's Schema refuses, before sending), `RequestTimeout`, `ConnectionLost`
   * or `ClientClosed`. While reconnecting, requests wait (within their timeout) and go once rejoined.
   */
  request(frame: Request, options: { readonly timeoutMs?: number } = {}): Promise<Ack> {
    return this.send(frame, options.timeoutMs) as Promise<Ack>
  }

  /** A round trip to the server. */
  async ping(options: { readonly timeoutMs?: number } = {}): Promise<void> {
    await this.send({ type: "ping" }, options.timeoutMs)
  }

  /** Creates a thread (the caller is its creator and a member) and joins it. */
  async createThread(options: CreateThreadOptions = {}): Promise<Thread> {
    const ack = await this.request({
      type: "create_thread",
      ...(options.title === undefined ? {} : { title: options.title }),
      ...(options.members === undefined ? {} : { members: options.members })
    })
    return this.join(ack.thread_id ?? "")
  }

  /** Joins a thread, replaying its events after `afterSeq` (the whole thread by default); joined again after each reconnect. */
  async join(threadId: string, options: JoinOptions = {}): Promise<Thread> {
    const existing = this.threads.get(threadId)
    if (existing !== undefined && existing.joined) return existing
    const thread = existing ?? new Thread(this.threadHost, threadId, options.afterSeq ?? 0)
    this.threads.set(threadId, thread)
    try {
      const ack = await this.request({ type: "join_thread", thread_id: threadId, after_seq: thread.lastSeq })
      thread.joinedWith(ack)
      return thread
    } catch (error) {
      if (!thread.joined) this.threads.delete(threadId)
      throw error
    }
  }

  private async leave(thread: Thread): Promise<void> {
    thread.joined = false
    this.threads.delete(thread.id)
    try {
      await this.request({ type: "leave_thread", thread_id: thread.id })
    } finally {
      thread.end(new ClientClosed(CloseCode.Normal, "the thread was left"))
    }
  }

  /** Closes the connection for good; pending requests and unfinished runs reject with `ClientClosed`. */
  close(): void {
    this.finish(CloseCode.Normal, "closed by the client")
  }

  // ---------------------------------------------------------------- connection

  private isClosed(): boolean {
    return this.state === "closed"
  }

  private isOpen(): boolean {
    return this.state === "open" && this.welcomed && this.socket !== undefined
  }

  /** One connection attempt: resolves on `welcome`, rejects if the socket closes (or stays silent) before. */
  private async attempt(reason: TokenReason): Promise<void> {
    const token = await this.tokenFor(reason)
    if (this.state === "closed") throw new ClientClosed(this.closeInfo?.code ?? 1000, this.closeInfo?.reason ?? "")
    const ws = this.factory(this.options.url, token)
    this.socket = ws
    this.welcomed = false
    const timeoutMs = this.options.connectTimeoutMs ?? 10_000
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.attemptEnded = undefined
        this.socket = undefined
        ws.close()
        reject(new ConnectError(1006, `no welcome within ${timeoutMs} ms`))
      }, timeoutMs)
      this.attemptEnded = (error) => {
        clearTimeout(timer)
        this.attemptEnded = undefined
        if (error === undefined) resolve()
        else reject(error)
      }
      ws.onmessage = (event) => this.receive(ws, event.data)
      ws.onclose = (event) => this.closed(ws, event.code, event.reason)
      ws.onerror = () => {}
    })
  }

  /** The token for a connection: the current one while it is fresh, else the provider's. */
  private async tokenFor(reason: TokenReason): Promise<string> {
    const provider = this.options.token
    const current = this.token
    if (reason === "connect" && current !== undefined) {
      if (this.tokenExpiry === undefined || this.tokenExpiry - Date.now() > this.refreshAheadMs()) return current
      reason = "expiring"
    }
    const token = typeof provider === "string" ? provider : await provider(reason)
    const expiry = expiryOf(token)
    if (expiry !== undefined && expiry <= Date.now()) {
      throw new ConnectError(CloseCode.TokenExpired, "the token has expired and no fresh one was given")
    }
    this.token = token
    this.tokenExpiry = expiry
    return token
  }

  private refreshAheadMs() {
    return this.options.refreshAheadMs ?? 30_000
  }

  private scheduleRefresh() {
    clearTimeout(this.refreshTimer)
    this.refreshTimer = undefined
    if (typeof this.options.token === "string" || this.tokenExpiry === undefined) return
    const delay = refreshDelay(this.tokenExpiry - Date.now(), this.refreshAheadMs())
    this.refreshTimer = setTimeout(() => void this.refresh(), delay)
  }

  /** Ahead of the token's expiry: a fresh token from the provider, sent as `refresh_token`. */
  private async refresh() {
    this.refreshTimer = undefined
    const provider = this.options.token
    if (typeof provider === "string" || !this.isOpen()) return
    try {
      const token = await provider("expiring")
      // The same token again: nothing to refresh; the close 4001 then asks for a fresh one.
      if (token === this.token) return
      await this.request({ type: "refresh_token", token })
      this.token = token
      this.tokenExpiry = expiryOf(token)
    } catch (error) {
      if (this.state === "closed") return
      this.listeners.emit({ type: "token_refresh_failed", error })
    }
    if (this.isOpen()) this.scheduleRefresh()
  }

  private receive(ws: WebSocketLike, data: unknown) {
    if (ws !== this.socket) return
    const text = messageText(data)
    if (text === undefined) return
    const incoming = decodeServerFrame(text)
    switch (incoming.kind) {
      case "ignored":
        return
      case "unknown_event":
        return this.threads.get(incoming.thread_id)?.receive(incoming.seq, undefined)
      case "error":
        return this.reply(incoming.ref, undefined, new RequestError(incoming.code, incoming.message))
      case "frame":
        return this.frame(incoming.frame)
    }
  }

  private frame(frame: ServerFrame) {
    switch (frame.type) {
      case "welcome":
        return this.welcomeReceived(frame)
      case "ack":
        return this.reply(frame.ref, frame, undefined)
      case "pong":
        return this.reply(frame.ref, frame, undefined)
      case "error":
        return this.reply(frame.ref, undefined, new RequestError(frame.code, frame.message))
      case "presence":
        return this.threads.get(frame.thread_id)?.presence(frame)
      case "event":
        return this.threads.get(frame.thread_id)?.receive(frame.seq, frame)
    }
  }

  private welcomeReceived(welcome: Welcome) {
    if (this.welcomed) return
    const reconnected = this.welcome !== undefined
    this.welcome = welcome
    this.welcomed = true
    this.state = "open"
    this.attempts = 0
    // Rejoins first: the server handles frames in order, so requests queued meanwhile see the threads joined.
    for (const thread of this.threads.values()) if (thread.joined) this.rejoin(thread)
    for (const id of this.queue.splice(0)) {
      const pending = this.pending.get(id)
      if (pending !== undefined) this.transmit(pending)
    }
    this.scheduleRefresh()
    if (this.socket !== undefined) this.scheduleWatchdog(this.socket)
    this.listeners.emit({ type: "connected", welcome, reconnected })
    this.attemptEnded?.(undefined)
  }

  /** Pings the server now and then; no pong within the request timeout drops the connection (it reconnects). */
  private scheduleWatchdog(ws: WebSocketLike) {
    const every = this.options.pingIntervalMs ?? this.welcome?.heartbeat_ms ?? 25_000
    if (every <= 0) return
    this.watchdog = setTimeout(() => {
      if (ws !== this.socket || !this.isOpen()) return
      this.send({ type: "ping" }).then(
        () => {
          if (ws === this.socket) this.scheduleWatchdog(ws)
        },
        (error) => {
          if (!(error instanceof RequestTimeout) || ws !== this.socket) return
          try {
            ws.close(CloseCode.Normal, "no answer to ping")
          } catch {
            // Already closing.
          }
          this.closed(ws, 1006, "no answer to ping")
        }
      )
    }, every)
  }

  /** Joins the thread again after the last `seq` delivered: after a reconnect, or on the same connection after a gap. */
  private rejoin(thread: Thread) {
    thread.resyncing = true
    this.request({ type: "join_thread", thread_id: thread.id, after_seq: thread.lastSeq }).then(
      (ack) => {
        if (this.threads.get(thread.id) === thread) thread.joinedWith(ack)
      },
      (error) => {
        if (this.threads.get(thread.id) !== thread || this.state === "closed") return
        if (error instanceof RequestError && error.code === "not_found") {
          // No longer a member: the thread is gone for this user.
          this.threads.delete(thread.id)
          thread.end(error)
        } else if (!(error instanceof ConnectionLost)) {
          // `unavailable` (the replay could not be read) or a timeout: try again shortly.
          setTimeout(() => {
            if (this.isOpen() && this.threads.get(thread.id) === thread) this.rejoin(thread)
          }, 1_000)
        }
      }
    )
  }

  private send(frame: Request, timeoutMs = this.options.requestTimeoutMs ?? 10_000): Promise<ServerFrame> {
    if (this.state === "closed") {
      return Promise.reject(new ClientClosed(this.closeInfo?.code ?? 1000, this.closeInfo?.reason ?? ""))
    }
    const id = `${++this.nextId}`
    const full = { ...frame, id }
    const valid = validate(full)
    if (Either.isLeft(valid)) return Promise.reject(new RequestError("invalid_message", describe(valid.left)))
    return new Promise<ServerFrame>((resolve, reject) => {
      const pending: Pending = {
        name: frame.type,
        text: JSON.stringify(full),
        repeatable: repeatable.has(frame.type),
        resolve,
        reject,
        timer: undefined,
        sentOn: undefined
      }
      pending.timer = setTimeout(() => {
        this.pending.delete(id)
        const queued = this.queue.indexOf(id)
        if (queued >= 0) this.queue.splice(queued, 1)
        reject(new RequestTimeout(frame.type, timeoutMs))
      }, timeoutMs)
      this.pending.set(id, pending)
      if (this.isOpen()) this.transmit(pending)
      else this.queue.push(id)
    })
  }

  private transmit(pending: Pending) {
    pending.sentOn = this.socket
    try {
      this.socket!.send(pending.text)
    } catch {
      // The socket is closing: its close handler deals with what was sent on it.
    }
  }

  private reply(ref: string | undefined, frame: ServerFrame | undefined, error: Error | undefined) {
    if (ref === undefined) return
    const pending = this.pending.get(ref)
    if (pending === undefined) return
    this.pending.delete(ref)
    clearTimeout(pending.timer)
    if (error !== undefined) pending.reject(error)
    else pending.resolve(frame!)
  }

  private closed(ws: WebSocketLike, code: number, reason: string) {
    if (ws !== this.socket) return
    this.socket = undefined
    clearTimeout(this.refreshTimer)
    clearTimeout(this.watchdog)
    this.refreshTimer = undefined
    const wasWelcomed = this.welcomed
    this.welcomed = false
    // What was sent on this socket and not answered: sent again if that is safe, else it may or may not have been done.
    for (const [id, pending] of this.pending) {
      if (pending.sentOn !== ws) continue
      pending.sentOn = undefined
      if (pending.repeatable) this.queue.push(id)
      else {
        this.pending.delete(id)
        clearTimeout(pending.timer)
        pending.reject(new ConnectionLost(pending.name, code))
      }
    }
    if (!wasWelcomed) {
      this.attemptEnded?.(new ConnectError(code, reason))
      return
    }
    if (this.state === "closed") return
    const reconnecting = this.options.reconnect !== false && !final.has(code)
    if (reconnecting) this.state = "reconnecting"
    this.listeners.emit({ type: "disconnected", code, reason, reconnecting })
    if (!reconnecting) return this.finish(code, reason)
    void this.reconnect(code === CloseCode.TokenExpired ? "expired" : "connect")
  }

  private async reconnect(first: TokenReason) {
    this.state = "reconnecting"
    let reason = first
    const options = this.options.reconnect === false ? {} : this.options.reconnect ?? {}
    const initial = options.initialDelayMs ?? 250
    const max = options.maxDelayMs ?? 10_000
    for (;;) {
      if (this.isClosed()) return
      if (this.attempts >= (options.maxAttempts ?? Infinity)) {
        return this.finish(1006, `no connection after ${this.attempts} attempts`)
      }
      // A token that expired is replaced at once; anything else waits, longer each attempt, jittered.
      const cap = Math.min(max, initial * 2 ** this.attempts)
      const delay = reason === "expired" && this.attempts === 0 ? 0 : cap / 2 + Math.random() * cap / 2
      this.attempts++
      await this.sleep(delay)
      if (this.isClosed()) return
      try {
        await this.attempt(reason)
        return
      } catch (error) {
        if (this.isClosed()) return
        if (error instanceof ConnectError && error.code === CloseCode.TokenExpired && reason !== "connect") {
          return this.finish(CloseCode.TokenExpired, error.message)
        }
        // Refused before the upgrade looks the same as unreachable from a browser: the next attempt asks for a token.
        reason = "refused"
      }
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const wake = () => {
        this.sleeping = undefined
        resolve()
      }
      this.sleeping = { timer: setTimeout(wake, ms), wake }
    })
  }

  private finish(code: number, reason: string) {
    if (this.state === "closed") return
    this.state = "closed"
    this.closeInfo = { code, reason }
    clearTimeout(this.refreshTimer)
    clearTimeout(this.watchdog)
    if (this.sleeping !== undefined) {
      clearTimeout(this.sleeping.timer)
      this.sleeping.wake()
    }
    const error = new ClientClosed(code, reason)
    for (const pending of this.pending.values()) {
      clearTimeout(pending.timer)
      pending.reject(error)
    }
    this.pending.clear()
    this.queue.length = 0
    for (const thread of this.threads.values()) thread.end(error)
    const socket = this.socket
    this.socket = undefined
    this.attemptEnded?.(new ConnectError(code, reason))
    try {
      socket?.close(CloseCode.Normal)
    } catch {
      // Already closing.
    }
    this.listeners.end()
  }
}

/** Connects a client: `AgentChatClient.connect`. */
export const connect = (options: ClientOptions): Promise<AgentChatClient> => AgentChatClient.connect(options)

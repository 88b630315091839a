/**
 * A lean protocol client for stress runs. `ChatClient` keeps every frame
 * and rescans them on each wait, which is right for tests and quadratic
 * over thousands of frames; this one hands each frame to a callback once
 * and matches replies to requests by id. A retired client ignores whatever
 * its socket still delivers, as a real client drops a connection it gave
 * up on (its reconnect asks for everything after the last seq it kept).
 */
import WebSocket from "ws"
import { type CloseInfo, type EventFrame, RequestFailed, type ServerFrame } from "../../test/utils/ChatClient.ts"

interface Pending {
  /** Runs in the frame's own turn, before any later frame is handled (a promise continuation would not). */
  readonly onAck: ((ack: Record<string, any>) => void) | undefined
  readonly resolve: (reply: Record<string, any>) => void
  readonly reject: (error: Error) => void
  readonly timer: NodeJS.Timeout
}

export class ConnectionLost extends Error {}

let clientSerial = 0

export class StressClient {
  closed: CloseInfo | undefined
  retired = false
  /** Frames that were not JSON objects with a `type`; the server must never send one. */
  unreadable = 0
  onEvent: (event: EventFrame) => void = () => {}
  /** Every frame that is not an event and does not answer one of this client's requests. */
  onFrame: (frame: ServerFrame) => void = () => {}
  private readonly pending = new Map<string, Pending>()
  private readonly closeWaiters = new Set<(info: CloseInfo) => void>()
  private readonly prefix = `s${++clientSerial}-`
  private requests = 0

  private constructor(readonly ws: WebSocket) {
    ws.on("message", (data, binary) => {
      if (this.retired) return
      let frame: ServerFrame
      try {
        frame = JSON.parse(binary ? "" : data.toString()) as ServerFrame
      } catch {
        this.unreadable++
        return
      }
      if (typeof frame !== "object" || frame === null || typeof frame.type !== "string") {
        this.unreadable++
        return
      }
      if (frame.type === "event") return this.onEvent(frame)
      if ((frame.type === "ack" || frame.type === "error" || frame.type === "pong") && frame.ref !== undefined) {
        const waiting = this.pending.get(frame.ref)
        if (waiting !== undefined) {
          this.pending.delete(frame.ref)
          clearTimeout(waiting.timer)
          if (frame.type === "error") waiting.reject(new RequestFailed(frame.code, frame.message))
          else {
            waiting.onAck?.(frame)
            waiting.resolve(frame)
          }
          return
        }
      }
      this.onFrame(frame)
    })
    ws.on("close", (code, reason) => {
      const info = { code, reason: reason.toString() }
      this.closed = info
      this.failPending(`connection closed with ${code}`)
      for (const waiter of this.closeWaiters) waiter(info)
      this.closeWaiters.clear()
    })
    ws.on("error", () => {})
  }

  static connect(url: string, token: string, timeoutMs = 10_000): Promise<StressClient> {
    const ws = new WebSocket(url, {
      headers: { authorization: `Bearer ${token}` },
      perMessageDeflate: false,
      handshakeTimeout: timeoutMs
    })
    const client = new StressClient(ws)
    return new Promise((resolve, reject) => {
      ws.once("open", () => resolve(client))
      ws.once("unexpected-response", (_request, response) => {
        let body = ""
        response.on("data", (chunk: Buffer) => body += chunk.toString())
        response.on("end", () => {
          ws.terminate()
          reject(new Error(`upgrade refused with ${response.statusCode}: ${body}`))
        })
      })
      ws.once("error", reject)
    })
  }

  get open() {
    return this.ws.readyState === WebSocket.OPEN && !this.retired
  }

  send(frame: Record<string, unknown> | string | Buffer) {
    if (Buffer.isBuffer(frame)) this.ws.send(frame, { binary: true })
    else this.ws.send(typeof frame === "string" ? frame : JSON.stringify(frame))
  }

  /** Sends a request with a fresh id; resolves with its ack (or pong), rejects with `RequestFailed` for its error. */
  request(
    frame: Record<string, unknown>,
    timeoutMs = 10_000,
    onAck?: (ack: Record<string, any>) => void
  ): Promise<Record<string, any>> {
    if (!this.open) return Promise.reject(new ConnectionLost("request on a closed connection"))
    const id = `${this.prefix}${++this.requests}`
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id)
        reject(new Error(`no reply to ${String(frame.type)} within ${timeoutMs} ms`))
      }, timeoutMs)
      this.pending.set(id, { onAck, resolve, reject, timer })
      this.send({ ...frame, id })
    })
  }

  waitClose(timeoutMs = 10_000): Promise<CloseInfo> {
    if (this.closed !== undefined) return Promise.resolve(this.closed)
    return new Promise((resolve, reject) => {
      const waiter = (info: CloseInfo) => {
        clearTimeout(timer)
        resolve(info)
      }
      const timer = setTimeout(() => {
        this.closeWaiters.delete(waiter)
        reject(new Error(`no close within ${timeoutMs} ms`))
      }, timeoutMs)
      this.closeWaiters.add(waiter)
    })
  }

  /** Gives the connection up abruptly (no close handshake), as a dropped network does. */
  terminate() {
    this.retire()
    this.ws.terminate()
  }

  /** Gives the connection up with a close handshake. */
  close(code = 1000) {
    this.retire()
    this.ws.close(code)
  }

  private retire() {
    this.retired = true
    this.failPending("connection given up")
  }

  private failPending(reason: string) {
    for (const waiting of this.pending.values()) {
      clearTimeout(waiting.timer)
      waiting.reject(new ConnectionLost(reason))
    }
    this.pending.clear()
  }
}

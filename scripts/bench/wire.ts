/**
 * A minimal WebSocket client on `net` for the load generator: the upgrade
 * with a Bearer token, unmasked server frames parsed by their headers only,
 * and each text frame handed over as a slice of the received buffer, so
 * counting a delivery costs no allocation, no UTF-8 decoding and no
 * JSON.parse. Pings are answered; frames are never fragmented by `ws`.
 *
 * For Socket.IO it speaks Engine.IO 4 over that WebSocket: the upgrade at
 * `/socket.io/?EIO=4&transport=websocket`, then, on the server's open
 * packet `0{…}`, the namespace connect `40{"token":…}`. It answers the
 * server's pings `2` with `3`, and hands the pool agent-chat's frames: the
 * server's connect `40{"sid":…}` as a welcome, the envelope inside an
 * event `42["event",{…}]` as a slice, and the reply inside an ack `43<id>[{…}]`.
 */
import { randomBytes } from "node:crypto"
import { connect, type Socket } from "node:net"
import type { WireProtocol } from "./common.ts"

export interface WireHandlers {
  /** A text frame: bytes [start, end) of `buf`, valid only during the call. */
  readonly onText: (buf: Buffer, start: number, end: number) => void
  readonly onClose: (hadError: boolean) => void
}

export class UpgradeRefused extends Error {}

const HEADER_END = Buffer.from("\r\n\r\n")
const ZERO_MASK = Buffer.alloc(4)
const SIO_EVENT = Buffer.from("42[\"event\",")
const SIO_WELCOME = Buffer.from("{\"type\":\"welcome\"}")
const CHAR_0 = 0x30
const CHAR_9 = 0x39
const OPEN_BRACKET = 0x5b

/** A client frame: masked, as the protocol requires; a zero key leaves the payload as it is. */
const frame = (opcode: number, payload: Buffer): Buffer => {
  const n = payload.length
  if (n > 0xffff) throw new Error("client frames are small")
  const head = n < 126
    ? Buffer.from([0x80 | opcode, 0x80 | n])
    : Buffer.from([0x80 | opcode, 0x80 | 126, n >> 8, n & 255])
  return Buffer.concat([head, ZERO_MASK, payload])
}

/** Header plus payload length of the frame that starts `buf`, once its header is complete. */
const frameSize = (buf: Buffer): number | undefined => {
  if (buf.length < 2) return undefined
  const len = buf[1]! & 0x7f
  if (len < 126) return 2 + len
  if (len === 126) return buf.length < 4 ? undefined : 4 + buf.readUInt16BE(2)
  return buf.length < 10 ? undefined : 10 + buf.readUInt32BE(2) * 2 ** 32 + buf.readUInt32BE(6)
}

export class WireConnection {
  private pending: Buffer | null = null
  private upgraded = false
  closed = false

  private constructor(
    readonly socket: Socket,
    private readonly handlers: WireHandlers,
    private readonly sio: { readonly token: string } | undefined
  ) {}

  /** Resolves once the server has answered 101; rejects with the refusal or the socket error. */
  static open(
    port: number,
    token: string,
    handlers: WireHandlers,
    protocol: WireProtocol = "agent-chat"
  ): Promise<WireConnection> {
    return new Promise((resolve, reject) => {
      const socket = connect({ port, host: "127.0.0.1", noDelay: true })
      const sio = protocol === "socket.io" ? { token } : undefined
      const connection = new WireConnection(socket, handlers, sio)
      let head: Buffer = Buffer.alloc(0)
      const onHandshake = (chunk: Buffer) => {
        head = Buffer.concat([head, chunk])
        const end = head.indexOf(HEADER_END)
        if (end < 0) {
          if (head.length > 16_384) socket.destroy(new UpgradeRefused("oversized upgrade response"))
          return
        }
        socket.off("data", onHandshake)
        const status = head.toString("latin1", 0, head.indexOf("\r\n"))
        if (!/^HTTP\/1\.1 101 /.test(status)) {
          socket.destroy()
          return reject(new UpgradeRefused(`${status} ${head.toString("utf8", end + 4)}`))
        }
        connection.upgraded = true
        socket.on("data", (data: Buffer) => connection.onData(data))
        resolve(connection)
        if (end + 4 < head.length) connection.onData(head.subarray(end + 4))
      }
      socket.on("data", onHandshake)
      socket.once("error", (error) => {
        if (!connection.upgraded) reject(error)
      })
      socket.once("close", (hadError) => {
        connection.closed = true
        if (!connection.upgraded) reject(new Error("closed during the upgrade"))
        else handlers.onClose(hadError)
      })
      socket.write(
        `GET ${sio === undefined ? "/ws" : "/socket.io/?EIO=4&transport=websocket"} HTTP/1.1\r\n` +
          `Host: 127.0.0.1:${port}\r\n` +
          "Upgrade: websocket\r\nConnection: Upgrade\r\n" +
          `Sec-WebSocket-Key: ${randomBytes(16).toString("base64")}\r\n` +
          "Sec-WebSocket-Version: 13\r\n" +
          (sio === undefined ? `Authorization: Bearer ${token}\r\n\r\n` : "\r\n")
      )
    })
  }

  send(text: string) {
    if (!this.closed) this.socket.write(frame(1, Buffer.from(text)))
  }

  /**
   * A request frame of agent-chat's protocol (its `type`, and the JSON of the whole frame); for Socket.IO, the
   * event of that name with the frame as its payload and an ack id, whose reply carries the frame's `id`.
   */
  request(type: string, json: string, ackId: number) {
    this.send(this.sio === undefined ? json : `42${ackId}[${JSON.stringify(type)},${json}]`)
  }

  /** An Engine.IO packet in bytes [start, end) of `buf`: answered, or handed over as agent-chat's frame. */
  private sioText(buf: Buffer, start: number, end: number) {
    const type = buf[start]
    if (type === 0x34 /* 4: message */) {
      const kind = buf[start + 1]
      if (
        kind === 0x32 /* 2: event */ && end - start > SIO_EVENT.length &&
        buf.compare(SIO_EVENT, 0, SIO_EVENT.length, start, start + SIO_EVENT.length) === 0
      ) {
        return this.handlers.onText(buf, start + SIO_EVENT.length, end - 1)
      }
      if (kind === 0x33 /* 3: ack */) {
        let at = start + 2
        while (at < end && buf[at]! >= CHAR_0 && buf[at]! <= CHAR_9) at++
        if (buf[at] === OPEN_BRACKET) return this.handlers.onText(buf, at + 1, end - 1)
      }
      if (kind === 0x30 /* 0: connect */) return this.handlers.onText(SIO_WELCOME, 0, SIO_WELCOME.length)
      if (kind === 0x34 /* 4: connect error */) {
        const error = Buffer.from(`{"type":"error","message":${JSON.stringify(buf.toString("utf8", start + 2, end))}}`)
        this.handlers.onText(error, 0, error.length)
        return this.socket.destroy()
      }
      return
    }
    if (type === 0x32 /* 2: ping */) return this.send("3")
    if (type === 0x30 /* 0: open */) return this.send(`40${JSON.stringify({ token: this.sio!.token })}`)
    if (type === 0x31 /* 1: close */) this.socket.end()
  }

  /** Drops the connection without a close handshake, as a crashed client or a lost network would. */
  destroy() {
    this.socket.destroy()
  }

  /**
   * A frame cut by the end of the last read is completed with just the bytes it lacks, so a stream of 4 KB
   * frames does not copy every 64 KB read a second time.
   */
  private onData(chunk: Buffer) {
    const pending = this.pending
    if (pending === null) return this.parse(chunk)
    this.pending = null
    const total = frameSize(pending)
    if (total === undefined || pending.length + chunk.length < total) return this.parse(Buffer.concat([pending, chunk]))
    const lacking = total - pending.length
    this.parse(Buffer.concat([pending, chunk.subarray(0, lacking)]))
    if (lacking < chunk.length) this.parse(chunk.subarray(lacking))
  }

  private parse(buf: Buffer) {
    const n = buf.length
    let off = 0
    while (n - off >= 2) {
      const b0 = buf[off]!
      let len = buf[off + 1]! & 0x7f
      let header = 2
      if (len === 126) {
        if (n - off < 4) break
        len = buf.readUInt16BE(off + 2)
        header = 4
      } else if (len === 127) {
        if (n - off < 10) break
        len = buf.readUInt32BE(off + 2) * 2 ** 32 + buf.readUInt32BE(off + 6)
        header = 10
      }
      const start = off + header
      const end = start + len
      if (end > n) break
      const opcode = b0 & 0x0f
      if (opcode === 1) {
        if (this.sio === undefined) this.handlers.onText(buf, start, end)
        else this.sioText(buf, start, end)
      } else if (opcode === 9 && !this.closed) this.socket.write(frame(10, buf.subarray(start, end)))
      else if (opcode === 8) this.socket.end()
      off = end
    }
    if (off < n) this.pending = buf.subarray(off)
  }
}

/**
 * The raw `ws` baseline: what a hand-written server does with no framework.
 * It checks the same JWT as agent-chat (jose `jwtVerify`, HS256, the test
 * secret) before upgrading, sends a welcome frame, tracks the sockets that
 * joined each thread, keeps stored events serialised in memory for replay,
 * and publishes with the naive loop: serialise each event once, then
 * `socket.send(bytes)` to every socket of its thread.
 *
 *   node --expose-gc --import tsx scripts/bench/baseline.ts
 */
import { jwtVerify } from "jose"
import { randomUUID } from "node:crypto"
import { createServer, type IncomingMessage } from "node:http"
import type { AddressInfo } from "node:net"
import type { Duplex } from "node:stream"
import { type WebSocket, WebSocketServer } from "ws"
import { encodeEnvelope } from "../../src/protocol/Events.ts"
import { benchSecret } from "./common.ts"
import { startControl } from "./control.ts"
import { memoryTarget, type MemoryThread } from "./memstore.ts"

interface ThreadState extends MemoryThread<string> {
  readonly sockets: Set<WebSocket>
}

const key = new TextEncoder().encode(benchSecret)
const verifyOptions = { algorithms: ["HS256"], clockTolerance: 5, requiredClaims: ["sub"] }
const threads = new Map<string, ThreadState>()
let connections = 0

// The same envelope bytes agent-chat sends, serialised once per event.
const encode = encodeEnvelope

const refuse = (socket: Duplex, status: number, error: string) => {
  const body = JSON.stringify({ error, reason: error })
  socket.end(
    `HTTP/1.1 ${status} Refused\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`
  )
}

const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false, clientTracking: false, maxPayload: 65536 })

const onMessage = (ws: WebSocket, joined: Set<ThreadState>, raw: string) => {
  let frame: any
  try {
    frame = JSON.parse(raw)
  } catch {
    return ws.send(JSON.stringify({ type: "error", code: "invalid_message", message: "not JSON" }))
  }
  const thread = typeof frame.thread_id === "string" ? threads.get(frame.thread_id) : undefined
  if (frame.type === "ping") return ws.send(JSON.stringify({ type: "pong", ref: frame.id }))
  if ((frame.type === "join_thread" || frame.type === "leave_thread") && thread === undefined) {
    return ws.send(JSON.stringify({ type: "error", ref: frame.id, code: "not_found", message: "thread not found" }))
  }
  if (frame.type === "join_thread" && thread !== undefined) {
    ws.send(JSON.stringify({ type: "ack", ref: frame.id, thread_id: frame.thread_id, head_seq: thread.head }))
    if (typeof frame.after_seq === "number") {
      for (let seq = frame.after_seq + 1; seq <= thread.log.length; seq++) ws.send(thread.log[seq - 1]!)
    }
    thread.sockets.add(ws)
    joined.add(thread)
  } else if (frame.type === "leave_thread" && thread !== undefined) {
    thread.sockets.delete(ws)
    joined.delete(thread)
    ws.send(JSON.stringify({ type: "ack", ref: frame.id, thread_id: frame.thread_id }))
  }
}

const accept = (request: IncomingMessage, socket: Duplex, head: Buffer, userId: string) =>
  wss.handleUpgrade(request, socket, head, (ws) => {
    const joined = new Set<ThreadState>()
    connections++
    ws.on("message", (data, binary) => {
      if (!binary) onMessage(ws, joined, data.toString())
    })
    ws.on("error", () => {})
    ws.on("close", () => {
      connections--
      for (const thread of joined) thread.sockets.delete(ws)
    })
    ws.send(JSON.stringify({
      type: "welcome",
      protocol: 1,
      connection_id: randomUUID(),
      user_id: userId,
      heartbeat_ms: 3_600_000,
      server_time: new Date().toISOString()
    }))
  })

const http = createServer((_request, response) => {
  response.writeHead(404)
  response.end()
})
http.on("upgrade", (request: IncomingMessage, socket: Duplex, head: Buffer) => {
  socket.on("error", () => socket.destroy())
  const match = /^Bearer\s+(\S+)\s*$/i.exec(request.headers.authorization ?? "")
  if (match === null) return refuse(socket, 401, "unauthorized")
  jwtVerify(match[1]!, key, verifyOptions).then(
    ({ payload }) =>
      typeof payload.sub === "string"
        ? accept(request, socket, head, payload.sub)
        : refuse(socket, 401, "unauthorized"),
    () => refuse(socket, 401, "unauthorized")
  )
})
await new Promise<void>((resolve) => http.listen(0, "127.0.0.1", resolve))

const target = memoryTarget<string, ThreadState>({
  kind: "baseline",
  wsPort: (http.address() as AddressInfo).port,
  store: "serialised events in a JavaScript array",
  threads,
  newThread: () => ({ head: 0, log: [], sockets: new Set() }),
  encode,
  deliver: (_threadId, thread, bytes) => {
    for (const socket of thread.sockets) socket.send(bytes)
  },
  hubStats: () => {
    let subscriptions = 0
    for (const thread of threads.values()) subscriptions += thread.sockets.size
    return { connections, threads: threads.size, subscriptions }
  }
})

const control = await startControl(target)
const stop = () => {
  control.close()
  http.close()
  process.exit(0)
}
process.on("SIGTERM", stop)
process.on("SIGINT", stop)

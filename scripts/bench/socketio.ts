/**
 * Socket.IO 4.8 as a benchmark server, doing what the raw `ws` baseline
 * does, the way a Socket.IO application would: the WebSocket transport
 * only, the same JWT (jose `jwtVerify`, HS256, the test secret) checked in
 * `io.use` middleware from the handshake's `auth.token`, a room per thread,
 * `join_thread`/`leave_thread` as events answered through Socket.IO acks,
 * stored events kept in memory for replay, and publishing with
 * `io.to(thread).emit("event", envelope)`, which Socket.IO encodes once per
 * broadcast. The namespace connect (`40{"sid":…}`) is the welcome.
 *
 *   node --expose-gc --import tsx scripts/bench/socketio.ts
 */
import { jwtVerify } from "jose"
import { randomUUID } from "node:crypto"
import { createServer } from "node:http"
import type { AddressInfo } from "node:net"
import { Server, type Socket } from "socket.io"
import type { StoredEvent } from "../../src/protocol/Events.ts"
import { benchSecret } from "./common.ts"
import { type BenchTarget, startControl } from "./control.ts"

/** The envelope agent-chat and the baseline send, as the object Socket.IO serialises. */
const envelope = (event: StoredEvent) => ({
  type: "event",
  event_type: event.event_type,
  event_id: event.event_id,
  thread_id: event.thread_id,
  run_id: event.run_id,
  seq: event.seq,
  timestamp: event.timestamp,
  data: event.data
})

interface ThreadState {
  head: number
  readonly log: Array<ReturnType<typeof envelope>>
}

const key = new TextEncoder().encode(benchSecret)
const verifyOptions = { algorithms: ["HS256"], clockTolerance: 5, requiredClaims: ["sub"] }
const threads = new Map<string, ThreadState>()
let connections = 0

const http = createServer((_request, response) => {
  response.writeHead(404)
  response.end()
})
const io = new Server(http, {
  transports: ["websocket"],
  serveClient: false,
  perMessageDeflate: false,
  maxHttpBufferSize: 65536
})

io.use((socket, next) => {
  const token: unknown = socket.handshake.auth.token
  if (typeof token !== "string") return next(new Error("unauthorized"))
  jwtVerify(token, key, verifyOptions).then(
    ({ payload }) => {
      if (typeof payload.sub !== "string") return next(new Error("unauthorized"))
      socket.data.userId = payload.sub
      next()
    },
    () => next(new Error("unauthorized"))
  )
})

type Ack = (reply: Record<string, unknown>) => void

const join = (socket: Socket, frame: any, ack: Ack) => {
  const thread = typeof frame?.thread_id === "string" ? threads.get(frame.thread_id) : undefined
  if (thread === undefined) {
    return ack({ type: "error", ref: frame?.id, code: "not_found", message: "thread not found" })
  }
  ack({ type: "ack", ref: frame.id, thread_id: frame.thread_id, head_seq: thread.head })
  if (typeof frame.after_seq === "number") {
    for (let seq = frame.after_seq + 1; seq <= thread.log.length; seq++) socket.emit("event", thread.log[seq - 1])
  }
  void socket.join(frame.thread_id)
}

io.on("connection", (socket) => {
  connections++
  socket.on("join_thread", (frame: any, ack: Ack) => join(socket, frame, ack))
  socket.on("leave_thread", (frame: any, ack: Ack) => {
    if (typeof frame?.thread_id !== "string" || !threads.has(frame.thread_id)) {
      return ack({ type: "error", ref: frame?.id, code: "not_found", message: "thread not found" })
    }
    void socket.leave(frame.thread_id)
    ack({ type: "ack", ref: frame.id, thread_id: frame.thread_id })
  })
  socket.on("disconnect", () => connections--)
})

await new Promise<void>((resolve) => http.listen(0, "127.0.0.1", resolve))

const target: BenchTarget = {
  kind: "socketio",
  wsPort: (http.address() as AddressInfo).port,
  runId: randomUUID(),
  store: "event objects in a JavaScript array",
  createThreads: (count) => {
    const ids = Array.from({ length: count }, () => randomUUID())
    for (const id of ids) threads.set(id, { head: 0, log: [] })
    return Promise.resolve(ids)
  },
  head: (threadId) => Promise.resolve(threads.get(threadId)?.head ?? 0),
  publish: (events) => {
    for (const event of events) {
      const thread = threads.get(event.thread_id)
      if (thread === undefined) continue
      thread.head = Math.max(thread.head, event.seq)
      io.to(event.thread_id).emit("event", envelope(event))
    }
    return Promise.resolve()
  },
  append: (threadId, drafts) => {
    const thread = threads.get(threadId)
    if (thread === undefined) return Promise.reject(new Error(`no thread ${threadId}`))
    const timestamp = new Date().toISOString()
    const first = thread.log.length + 1
    const events = drafts.map((d, i): StoredEvent => ({
      event_id: randomUUID(),
      thread_id: threadId,
      run_id: target.runId,
      seq: first + i,
      timestamp,
      event_type: d.event_type,
      data: d.data
    }))
    for (const event of events) {
      const message = envelope(event)
      thread.log.push(message)
      thread.head = event.seq
      io.to(threadId).emit("event", message)
    }
    return Promise.resolve(events)
  },
  hubStats: () => {
    let subscriptions = 0
    for (const id of threads.keys()) subscriptions += io.sockets.adapter.rooms.get(id)?.size ?? 0
    return Promise.resolve({ connections, threads: threads.size, subscriptions })
  }
}

const control = await startControl(target)
const stop = () => {
  control.close()
  void io.close()
  process.exit(0)
}
process.on("SIGTERM", stop)
process.on("SIGINT", stop)

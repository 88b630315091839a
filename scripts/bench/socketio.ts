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
import { createServer } from "node:http"
import type { AddressInfo } from "node:net"
import { Server, type Socket } from "socket.io"
import type { StoredEvent } from "../../src/protocol/Events.ts"
import { benchSecret } from "./common.ts"
import { startControl } from "./control.ts"
import { memoryTarget, type MemoryThread } from "./memstore.ts"

/**
 * The envelope agent-chat and the baseline send (the same fields; in the order of StoredEvent, which the load
 * generator does not mind), as the object Socket.IO serialises.
 */
const envelope = (event: StoredEvent) => ({ type: "event" as const, ...event })

type ThreadState = MemoryThread<ReturnType<typeof envelope>>

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

const target = memoryTarget<ReturnType<typeof envelope>, ThreadState>({
  kind: "socketio",
  wsPort: (http.address() as AddressInfo).port,
  store: "event objects in a JavaScript array",
  threads,
  newThread: () => ({ head: 0, log: [] }),
  encode: envelope,
  deliver: (threadId, _thread, message) => io.to(threadId).emit("event", message),
  hubStats: () => {
    let subscriptions = 0
    for (const id of threads.keys()) subscriptions += io.sockets.adapter.rooms.get(id)?.size ?? 0
    return { connections, threads: threads.size, subscriptions }
  }
})

const control = await startControl(target)
const stop = () => {
  control.close()
  void io.close()
  process.exit(0)
}
process.on("SIGTERM", stop)
process.on("SIGINT", stop)

/**
 * Request correlation against a scripted server (a bare `ws` server that
 * answers only what the test says): timeouts, a connection lost before the
 * reply, requests made while reconnecting, replies matched by id out of
 * order; and a thread's delivery by seq (duplicates dropped, a gap found
 * and the thread rejoined from its last seq).
 */
import { afterEach, describe, expect, it } from "vitest"
import { WebSocket, WebSocketServer } from "ws"
import {
  type AgentChatClient,
  type ClientEvent,
  connect,
  type ThreadEvent,
  type WebSocketConstructor
} from "../../src/client/index.ts"
import { until } from "../utils/until.ts"

interface Scripted {
  readonly url: string
  readonly received: Array<Record<string, any>>
  readonly sockets: Array<WebSocket>
  /** Each upgrade's `Authorization` header and `token` query parameter. */
  readonly upgrades: Array<{ readonly header: string | undefined; readonly query: string | null }>
  /** What the server answers a frame with (nothing by default). */
  answer: (frame: Record<string, any>, socket: WebSocket) => void
  readonly close: () => Promise<void>
}

const welcome = (n: number) =>
  JSON.stringify({
    type: "welcome",
    protocol: 1,
    connection_id: `c-${n}`,
    user_id: "sam",
    heartbeat_ms: 25_000,
    server_time: new Date().toISOString()
  })

const scripted = async (): Promise<Scripted> => {
  const wss = new WebSocketServer({ port: 0, host: "127.0.0.1" })
  await new Promise((resolve) => wss.once("listening", resolve))
  const address = wss.address()
  const port = typeof address === "object" && address !== null ? address.port : 0
  const server: Scripted = {
    url: `ws://127.0.0.1:${port}/ws`,
    received: [],
    sockets: [],
    upgrades: [],
    answer: () => {},
    close: () =>
      new Promise((resolve) => {
        for (const socket of server.sockets) socket.terminate()
        wss.close(() => resolve())
      })
  }
  wss.on("connection", (socket, request) => {
    server.upgrades.push({
      header: request.headers.authorization,
      query: new URL(request.url ?? "/", "http://x").searchParams.get("token")
    })
    server.sockets.push(socket)
    socket.send(welcome(server.sockets.length))
    socket.on("message", (data) => {
      const frame = JSON.parse(data.toString())
      server.received.push(frame)
      server.answer(frame, socket)
    })
  })
  return server
}

const ack = (frame: Record<string, any>, fields: Record<string, unknown> = {}) =>
  JSON.stringify({ type: "ack", ref: frame.id, ...fields })

const event = (seq: number, delta = `d${seq}`) =>
  JSON.stringify({
    type: "event",
    event_type: "agent_response_delta",
    event_id: `e-${seq}`,
    thread_id: "t-1",
    run_id: "r-1",
    seq,
    timestamp: new Date().toISOString(),
    data: { delta }
  })

const cleanup: Array<() => unknown> = []
afterEach(async () => {
  for (const step of cleanup.splice(0).reverse()) await step()
})

const start = async (options: { readonly requestTimeoutMs?: number; readonly pingIntervalMs?: number } = {}) => {
  const server = await scripted()
  cleanup.push(() => server.close())
  const client: AgentChatClient = await connect({
    url: server.url,
    token: "opaque-token",
    reconnect: { initialDelayMs: 20, maxDelayMs: 50 },
    ...options
  })
  cleanup.push(() => client.close())
  return { server, client }
}

describe("requests", () => {
  it("a request with no reply fails with RequestTimeout after its timeout", async () => {
    const { client } = await start({ requestTimeoutMs: 150 })
    const started = Date.now()
    await expect(client.ping()).rejects.toMatchObject({ _tag: "RequestTimeout", request: "ping", timeoutMs: 150 })
    expect(Date.now() - started).toBeGreaterThanOrEqual(140)
    await expect(client.createThread()).rejects.toMatchObject({ _tag: "RequestTimeout", request: "create_thread" })
  })

  it("replies are matched by id, whatever their order; an error reply rejects only its own request", async () => {
    const { server, client } = await start()
    const held: Array<Record<string, any>> = []
    server.answer = (frame, socket) => {
      held.push(frame)
      if (held.length < 2) return
      // The second is answered first, with an error; then the first.
      socket.send(JSON.stringify({ type: "error", ref: held[1]!.id, code: "busy", message: "a run is active" }))
      socket.send(ack(held[0]!, { thread_id: "t-9" }))
    }
    const first = client.request({ type: "create_thread", title: "one" })
    const second = client.request({ type: "create_thread", title: "two" })
    await expect(second).rejects.toMatchObject({ _tag: "RequestError", code: "busy" })
    expect(await first).toMatchObject({ thread_id: "t-9" })
    expect(server.received.every((f) => typeof f.id === "string")).toBe(true)
  })

  it("a send lost with its connection fails with ConnectionLost; a join is sent again once reconnected", async () => {
    const { server, client } = await start()
    server.answer = (frame, socket) => {
      if (frame.type === "send_message" || (frame.type === "join_thread" && server.sockets.length === 1)) {
        socket.terminate()
      } else if (frame.type === "join_thread") {
        socket.send(ack(frame, { thread_id: "t-1", head_seq: 0, online: ["sam"] }))
      }
    }
    const joined = client.join("t-1")
    const thread = await joined
    expect(server.sockets.length).toBe(2)
    expect(thread.online).toEqual(["sam"])
    await expect(thread.send("hello")).rejects.toMatchObject({ _tag: "ConnectionLost", request: "send_message" })
  })

  it("requests made while reconnecting wait, and go after the rejoins", async () => {
    const { server, client } = await start()
    server.answer = (frame, socket) => {
      if (frame.type === "join_thread") socket.send(ack(frame, { thread_id: "t-1", head_seq: 0 }))
      if (frame.type === "create_thread") socket.send(ack(frame, { thread_id: "t-2" }))
    }
    await client.join("t-1")
    // Asked as soon as the drop is seen, so it waits for the next connection.
    const created = new Promise((resolve) => {
      const off = client.on((e) => {
        if (e.type !== "disconnected") return
        off()
        expect(client.state).toBe("reconnecting")
        resolve(client.request({ type: "create_thread" }))
      })
    })
    server.sockets[0]!.terminate()
    expect(await created).toMatchObject({ thread_id: "t-2" })
    const second = server.received.slice(1).map((f) => f.type)
    expect(second).toEqual(["join_thread", "create_thread"])
    expect(server.received[1]).toMatchObject({ type: "join_thread", thread_id: "t-1", after_seq: 0 })
  })
})

describe("the socket", () => {
  it("on `ws` the token goes in Authorization; on a WebSocket constructor given (as a browser's) in ?token=", async () => {
    const { server } = await start()
    expect(server.upgrades).toEqual([{ header: "Bearer opaque-token", query: null }])
    const browserLike = await connect({
      url: server.url,
      token: "opaque-token",
      WebSocket: WebSocket as unknown as WebSocketConstructor
    })
    cleanup.push(() => browserLike.close())
    expect(server.upgrades[1]).toEqual({ header: undefined, query: "opaque-token" })
  })
})

describe("run handles", () => {
  it("a run's events sent right behind its ack, in the same tick, all reach its handle", async () => {
    const { server, client } = await start()
    const stamp = (seq: number, event_type: string, data: unknown) =>
      JSON.stringify({
        type: "event",
        event_type,
        event_id: `e-${seq}`,
        thread_id: "t-1",
        run_id: seq === 1 ? null : "r-1",
        seq,
        timestamp: new Date().toISOString(),
        data
      })
    server.answer = (frame, socket) => {
      if (frame.type === "join_thread") socket.send(ack(frame, { thread_id: "t-1", head_seq: 0 }))
      if (frame.type !== "send_message") return
      socket.send(ack(frame, { message_id: "m-1", run_id: "r-1" }))
      socket.send(stamp(1, "message_created", { message_id: "m-1", user_id: "sam", content: frame.content }))
      socket.send(stamp(2, "agent_started", { agent: "scripted", message_id: "m-1" }))
      socket.send(stamp(3, "agent_response_delta", { delta: "4" }))
      socket.send(stamp(4, "agent_completed", { response: "4", duration_ms: 1 }))
    }
    const thread = await client.join("t-1")
    const run = await thread.send("what is 2+2")
    const end = await run.done
    expect(end).toMatchObject({ event_type: "agent_completed", seq: 4, data: { response: "4" } })
    expect(run.received.map((e) => e.event_type)).toEqual(["agent_started", "agent_response_delta", "agent_completed"])
  })
})

describe("the watchdog", () => {
  it("a connection whose pings go unanswered is dropped and opened again", async () => {
    const { server, client } = await start({ pingIntervalMs: 50, requestTimeoutMs: 100 })
    const notices: Array<ClientEvent> = []
    client.on((e) => notices.push(e))
    await until(async () => server.sockets.length >= 2, "a second connection")
    expect(server.received.filter((f) => f.type === "ping").length).toBeGreaterThanOrEqual(1)
    expect(notices[0]).toMatchObject({ type: "disconnected", code: 1006, reconnecting: true })
    // Answered pings keep the connection.
    server.answer = (frame, socket) => {
      if (frame.type === "ping") socket.send(JSON.stringify({ type: "pong", ref: frame.id }))
    }
    const count = server.sockets.length
    await new Promise((resolve) => setTimeout(resolve, 400))
    expect(server.sockets.length).toBeLessThanOrEqual(count + 1)
    const settled = server.sockets.length
    await new Promise((resolve) => setTimeout(resolve, 400))
    expect(server.sockets.length).toBe(settled)
  })
})

describe("delivery by seq", () => {
  it("drops duplicates, reports a gap and rejoins after the last seq; resumes after it on reconnect", async () => {
    const { server, client } = await start()
    server.answer = (frame, socket) => {
      if (frame.type !== "join_thread") return
      socket.send(ack(frame, { thread_id: "t-1", head_seq: 5 }))
      // Replays from after_seq, then (on the first join) a duplicate and a gap.
      for (let seq = frame.after_seq + 1; seq <= 5; seq++) {
        if (frame.after_seq === 0 && seq === 4) continue
        socket.send(event(seq))
        if (frame.after_seq === 0 && seq === 2) socket.send(event(2, "again"))
      }
    }
    const updates: Array<ClientEvent> = []
    client.on((u) => updates.push(u))
    const thread = await client.join("t-1")
    await until(async () => thread.lastSeq === 5, "seq 5")
    const delivered = updates.flatMap((u) => u.type === "event" ? [u as ThreadEvent] : [])
    expect(delivered.map((e) => e.seq)).toEqual([1, 2, 3, 4, 5])
    expect(delivered.map((e) => e.event_type === "agent_response_delta" && e.data.delta)).toEqual([
      "d1",
      "d2",
      "d3",
      "d4",
      "d5"
    ])
    expect(updates.filter((u) => u.type === "gap")).toEqual([{
      type: "gap",
      thread_id: "t-1",
      expected: 4,
      received: 5
    }])
    expect(server.received.map((f) => f.after_seq)).toEqual([0, 3])
    // A reconnect rejoins after the last seq delivered.
    server.sockets.at(-1)!.terminate()
    await until(async () => server.received.length === 3, "the rejoin")
    expect(server.received[2]).toMatchObject({ type: "join_thread", thread_id: "t-1", after_seq: 5 })
  })
})

/**
 * AG-UI over HTTP: `POST /agui`, the resume route and the stop route, driven
 * with @ag-ui/client's HttpAgent, every stream checked with its verifyEvents.
 */
import { type BaseEvent, EventType, HttpAgent, type RunAgentInput, verifyEvents } from "@ag-ui/client"
import { expect, layer } from "@effect/vitest"
import { randomUUID } from "node:crypto"
import { failingModel, Gate, gatedModel } from "../utils/Models.ts"
import { TestServer, type TestServerShape, withServer } from "../utils/TestServer.ts"
import { sign } from "../utils/tokens.ts"

interface Frame {
  readonly id: string | undefined
  readonly event: BaseEvent
  /** The frame as it came, for feeding a recorded stream back to the client. */
  readonly raw: string
}

const bearer = async (userId: string) => ({ authorization: `Bearer ${await sign(userId)}` })

const input = (threadId: string, content: unknown): RunAgentInput => ({
  threadId,
  runId: randomUUID(),
  messages: [{ id: randomUUID(), role: "user", content } as RunAgentInput["messages"][number]],
  tools: [],
  context: []
})

/** The agent's stream of a run through verifyEvents: what it lets through, each also given to `onEvent`. */
const verified = (agent: HttpAgent, runInput: RunAgentInput, onEvent: (event: BaseEvent) => void = () => {}) =>
  new Promise<Array<BaseEvent>>((resolve, reject) => {
    const events: Array<BaseEvent> = []
    agent.run(runInput).pipe(verifyEvents()).subscribe({
      next: (event) => {
        events.push(event)
        onEvent(event)
      },
      error: reject,
      complete: () => resolve(events)
    })
  })

/** A recorded SSE text, parsed and verified by the client as if a server had sent it. */
const verifyRecorded = (threadId: string, text: string) =>
  verified(
    new HttpAgent({
      url: "http://recorded.invalid/agui",
      threadId,
      fetch: async () => new Response(text, { headers: { "content-type": "text/event-stream" } })
    }),
    input(threadId, "recorded")
  )

const parseFrames = (text: string): Array<Frame> =>
  text.split("\n\n").flatMap((block) => {
    const lines = block.split("\n")
    const data = lines.filter((l) => l.startsWith("data: ")).map((l) => l.slice(6))
    if (data.length === 0) return []
    const id = lines.find((l) => l.startsWith("id: "))?.slice(4)
    return [{ id, event: JSON.parse(data.join("\n")) as BaseEvent, raw: `${block}\n\n` }]
  })

/**
 * Reads an SSE response frame by frame; `stop` (given the frames so far) ends the read early by
 * aborting the request, as a client whose connection drops.
 */
const readSse = async (
  url: string,
  init: RequestInit,
  stop: (frames: ReadonlyArray<Frame>) => boolean = () => false
) => {
  const abort = new AbortController()
  const response = await fetch(url, { ...init, signal: abort.signal })
  expect(response.status).toBe(200)
  expect(response.headers.get("content-type")).toMatch(/^text\/event-stream/)
  const reader = response.body!.getReader()
  const decoder = new TextDecoder()
  let buffer = ""
  const frames: Array<Frame> = []
  for (;;) {
    const { done, value } = await reader.read()
    if (done) return { frames, complete: true }
    buffer += decoder.decode(value, { stream: true })
    const end = buffer.lastIndexOf("\n\n")
    if (end < 0) continue
    frames.push(...parseFrames(buffer.slice(0, end + 2)))
    buffer = buffer.slice(end + 2)
    if (stop(frames)) {
      abort.abort()
      await reader.cancel().catch(() => undefined)
      return { frames, complete: false }
    }
  }
}

const post = async (server: TestServerShape, userId: string, body: unknown) =>
  fetch(`${server.httpUrl}/agui`, {
    method: "POST",
    headers: { ...(await bearer(userId)), "content-type": "application/json", accept: "text/event-stream" },
    body: typeof body === "string" ? body : JSON.stringify(body)
  })

const eventsUrl = (server: TestServerShape, threadId: string, runId: string) =>
  `${server.httpUrl}/agui/${threadId}/runs/${runId}/events`

const types = (events: ReadonlyArray<BaseEvent>) => events.map((e) => e.type)
const runIdOf = (events: ReadonlyArray<BaseEvent>) =>
  events.find((e) => e.type === EventType.RUN_STARTED)!.runId as string

const newThread = async (server: TestServerShape, userId: string) => {
  const client = await server.connect(userId)
  const { thread_id } = await client.request({ type: "create_thread" })
  client.close()
  return thread_id as string
}

layer(TestServer.layer(), { excludeTestServices: true, timeout: 60_000 })("AG-UI with the builtin agent", (it) => {
  it.effect("streams a run with thinking, a tool call and an answer, which HttpAgent takes in", () =>
    withServer(async (server) => {
      const threadId = await newThread(server, "alice")
      const agent = new HttpAgent({ url: `${server.httpUrl}/agui`, threadId, headers: await bearer("alice") })
      const events = await verified(agent, input(threadId, "what is 12 * (3 + 4)?"))
      const seen = types(events)
      expect(seen[0]).toBe(EventType.RUN_STARTED)
      expect(seen.at(-1)).toBe(EventType.RUN_FINISHED)
      expect(events.at(-1)).toMatchObject({ threadId, outcome: { type: "success" } })
      for (
        const type of [
          EventType.REASONING_START,
          EventType.REASONING_MESSAGE_START,
          EventType.REASONING_MESSAGE_CONTENT,
          EventType.REASONING_MESSAGE_END,
          EventType.REASONING_END,
          EventType.TOOL_CALL_START,
          EventType.TOOL_CALL_ARGS,
          EventType.TOOL_CALL_END,
          EventType.TOOL_CALL_RESULT,
          EventType.TEXT_MESSAGE_START,
          EventType.TEXT_MESSAGE_CONTENT,
          EventType.TEXT_MESSAGE_END
        ]
      ) expect(seen, type).toContain(type)
      const start = events.find((e) => e.type === EventType.TOOL_CALL_START)!
      expect(start.toolCallName).toBe("calculator")
      const args = events.find((e) => e.type === EventType.TOOL_CALL_ARGS)!
      expect(JSON.parse(args.delta as string)).toEqual({ expression: "12 * (3 + 4)" })
      const result = events.find((e) => e.type === EventType.TOOL_CALL_RESULT)!
      expect(JSON.parse(result.content as string)).toMatchObject({ result: 84 })
      const text = events.filter((e) => e.type === EventType.TEXT_MESSAGE_CONTENT).map((e) => e.delta).join("")
      expect(text).toContain("84")

      // The same run through HttpAgent.runAgent: its messages gain the answer, and the thread has it stored.
      agent.messages = [{ id: randomUUID(), role: "user", content: "what is 2 + 3?" }]
      const { newMessages } = await agent.runAgent()
      const answer = newMessages.find((m) => m.role === "assistant" && typeof m.content === "string")
      expect(answer?.content).toContain("5")
      const stored = await (await server.fetch(`/api/threads/${threadId}/events`, { userId: "alice" })).json()
      const contents = stored.events.filter((e: { event_type: string }) => e.event_type === "message_created")
        .map((e: { data: { content: string } }) => e.data.content)
      expect(contents).toEqual(["what is 12 * (3 + 4)?", "what is 2 + 3?"])
    }))

  it.effect("resumes a stream after any of its ids, exactly: nothing lost, nothing repeated", () =>
    withServer(async (server) => {
      const threadId = await newThread(server, "alice")
      const first = await readSse(`${server.httpUrl}/agui`, {
        method: "POST",
        headers: { ...(await bearer("alice")), "content-type": "application/json" },
        body: JSON.stringify(input(threadId, "what is 12 * (3 + 4)?"))
      })
      expect(first.complete).toBe(true)
      const full = first.frames
      const runId = runIdOf(full.map((f) => f.event))
      // Every frame has an id, and the ids are distinct.
      expect(full.every((f) => f.id !== undefined)).toBe(true)
      expect(new Set(full.map((f) => f.id)).size).toBe(full.length)
      const headers = await bearer("alice")
      const again = await readSse(eventsUrl(server, threadId, runId), { headers })
      expect(again.frames.map((f) => f.raw)).toEqual(full.map((f) => f.raw))
      for (let i = 0; i < full.length; i++) {
        const rest = await readSse(eventsUrl(server, threadId, runId), {
          headers: { ...headers, "last-event-id": full[i]!.id! }
        })
        expect(rest.complete).toBe(true)
        const joined = [...full.slice(0, i + 1), ...rest.frames]
        expect(joined.map((f) => f.raw), `after ${full[i]!.id}`).toEqual(full.map((f) => f.raw))
      }
      // The query parameter does the same for clients that cannot set the header.
      const byQuery = await readSse(`${eventsUrl(server, threadId, runId)}?last_event_id=${full[2]!.id}`, { headers })
      expect(byQuery.frames.map((f) => f.raw)).toEqual(full.slice(3).map((f) => f.raw))
      await verifyRecorded(threadId, full.map((f) => f.raw).join(""))
    }))

  it.effect("answers 401 without a token, 404 for a thread not visible, 400 for bad input", () =>
    withServer(async (server) => {
      const threadId = await newThread(server, "alice")
      const anonymous = await fetch(`${server.httpUrl}/agui`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(input(threadId, "hi"))
      })
      expect(anonymous.status).toBe(401)
      expect(await anonymous.json()).toMatchObject({ error: "unauthorized" })
      const badToken = await fetch(`${server.httpUrl}/agui`, {
        method: "POST",
        headers: { authorization: "Bearer nope" },
        body: JSON.stringify(input(threadId, "hi"))
      })
      expect(badToken.status).toBe(401)

      for (const hidden of [threadId, "no-such-thread", "bad\u0000id"]) {
        const response = await post(server, hidden === threadId ? "mallory" : "alice", input(hidden, "hi"))
        expect(response.status, hidden).toBe(404)
        expect(await response.json()).toMatchObject({ error: "not_found" })
      }
      const agent = new HttpAgent({ url: `${server.httpUrl}/agui`, threadId, headers: await bearer("mallory") })
      await expect(verified(agent, input(threadId, "hi"))).rejects.toMatchObject({ status: 404 })

      const { runId: _runId, ...withoutRunId } = input(threadId, "hi")
      const bad: Array<[string, unknown]> = [
        ["not JSON", "{"],
        ["not an object", [1, 2]],
        ["no runId", withoutRunId],
        ["messages not an array", { ...input(threadId, "hi"), messages: "hi" }],
        ["an unknown role", { ...input(threadId, "hi"), messages: [{ id: "1", role: "robot", content: "hi" }] }],
        ["no user message", { ...input(threadId, "hi"), messages: [{ id: "1", role: "system", content: "be nice" }] }],
        ["an empty message", input(threadId, "")],
        ["no text", input(threadId, [{ type: "image", source: { type: "url", value: "http://x/y.png" } }])],
        ["a NUL", input(threadId, "a\u0000b")],
        ["too long", input(threadId, "x".repeat(16_001))]
      ]
      for (const [what, body] of bad) {
        const response = await post(server, "alice", body)
        expect(response.status, what).toBe(400)
        const json = await response.json()
        expect(json.error, what).toBe("invalid_message")
        expect(typeof json.reason, what).toBe("string")
      }
      // Nothing was sent, and the server still answers.
      const stored = await (await server.fetch(`/api/threads/${threadId}/events`, { userId: "alice" })).json()
      expect(stored.events).toEqual([])
      const ok = new HttpAgent({ url: `${server.httpUrl}/agui`, threadId, headers: await bearer("alice") })
      expect(types(await verified(ok, input(threadId, "hello"))).at(-1)).toBe(EventType.RUN_FINISHED)
    }))

  it.effect("the run routes answer 404 for a run not visible, 400 for a bad Last-Event-ID, 404 to stop an ended run", () =>
    withServer(async (server) => {
      const threadId = await newThread(server, "alice")
      const other = await newThread(server, "alice")
      const agent = new HttpAgent({ url: `${server.httpUrl}/agui`, threadId, headers: await bearer("alice") })
      const runId = runIdOf(await verified(agent, input(threadId, "hello")))
      const alice = await bearer("alice")
      const cases: Array<[string, string, Record<string, string>, number]> = [
        ["mallory", eventsUrl(server, threadId, runId), await bearer("mallory"), 404],
        ["another thread", eventsUrl(server, other, runId), alice, 404],
        ["unknown run", eventsUrl(server, threadId, "no-such-run"), alice, 404],
        ["bad id", eventsUrl(server, threadId, runId), { ...alice, "last-event-id": "x" }, 400],
        ["no token", eventsUrl(server, threadId, runId), {}, 401]
      ]
      for (const [what, url, headers, status] of cases) {
        const response = await fetch(url, { headers })
        expect(response.status, what).toBe(status)
        expect((await response.json()).error, what).toBeTypeOf("string")
      }
      const stop = await fetch(`${server.httpUrl}/agui/${threadId}/runs/${runId}/stop`, {
        method: "POST",
        headers: alice
      })
      expect(stop.status).toBe(404)
      const hidden = await fetch(`${server.httpUrl}/agui/${threadId}/runs/${runId}/stop`, {
        method: "POST",
        headers: await bearer("mallory")
      })
      expect(hidden.status).toBe(404)
    }))
})

const gate = new Gate()

layer(TestServer.layer({ model: gatedModel(gate, 5) }), { excludeTestServices: true, timeout: 60_000 })(
  "AG-UI with a slow model",
  (it) => {
    it.effect("the stop route cancels the run: RUN_FINISHED with outcome cancelled; a second message is 409 busy", () =>
      withServer(async (server) => {
        const threadId = await newThread(server, "alice")
        const agent = new HttpAgent({ url: `${server.httpUrl}/agui`, threadId, headers: await bearer("alice") })
        let runId: string | undefined
        let thought: () => void = () => {}
        const thinking = new Promise<void>((resolve) => thought = resolve)
        const events = verified(agent, input(threadId, "take your time"), (event) => {
          if (event.type === EventType.RUN_STARTED) runId = event.runId as string
          if (event.type === EventType.REASONING_END) thought()
        })
        await thinking
        const busy = await post(server, "alice", input(threadId, "another"))
        expect(busy.status).toBe(409)
        expect(await busy.json()).toMatchObject({ error: "busy" })
        gate.allow(1)
        const stop = await fetch(`${server.httpUrl}/agui/${threadId}/runs/${runId}/stop`, {
          method: "POST",
          headers: await bearer("alice")
        })
        expect(stop.status).toBe(200)
        expect(await stop.json()).toEqual({ thread_id: threadId, run_id: runId, status: "cancelled" })
        const all = await events
        expect(all.at(-1)).toMatchObject({ type: EventType.RUN_FINISHED, runId, outcome: { type: "cancelled" } })
        expect(types(all)).not.toContain(EventType.RUN_ERROR)
      }))

    it.effect("a client that reconnects mid-run with Last-Event-ID gets the rest, nothing lost or doubled", () =>
      withServer(async (server) => {
        const threadId = await newThread(server, "alice")
        const headers = await bearer("alice")
        // Cut off right after TEXT_MESSAGE_START: the first event of a stored event's group, id "<seq>.0".
        const gotStart = (frames: ReadonlyArray<Frame>) =>
          frames.some((f) => f.event.type === EventType.TEXT_MESSAGE_START)
        const reading = readSse(`${server.httpUrl}/agui`, {
          method: "POST",
          headers: { ...headers, "content-type": "application/json" },
          body: JSON.stringify(input(threadId, "tell me slowly"))
        }, gotStart)
        gate.allow(2)
        const read = await reading
        expect(read.complete).toBe(false)
        // The frames of one stored event come in one write: the connection is taken to drop inside it.
        const cut = read.frames.findIndex((f) => f.event.type === EventType.TEXT_MESSAGE_START)
        const first = { frames: read.frames.slice(0, cut + 1) }
        const last = first.frames.at(-1)!
        expect(last.event.type).toBe(EventType.TEXT_MESSAGE_START)
        expect(last.id).toMatch(/^\d+\.0$/)
        const runId = runIdOf(first.frames.map((f) => f.event))
        // Still running when it reconnects: two parts are held back until it is reading again.
        gate.allow(1)
        const resumed = readSse(eventsUrl(server, threadId, runId), {
          headers: { ...headers, "last-event-id": last.id! }
        })
        setTimeout(() => gate.allow(2), 100)
        const rest = await resumed
        expect(rest.complete).toBe(true)
        const full = await readSse(eventsUrl(server, threadId, runId), { headers })
        const joined = [...first.frames, ...rest.frames].map((f) => f.raw)
        expect(joined).toEqual(full.frames.map((f) => f.raw))
        const events = await verifyRecorded(threadId, joined.join(""))
        expect(events.at(-1)).toMatchObject({ type: EventType.RUN_FINISHED, outcome: { type: "success" } })
        const text = events.filter((e) => e.type === EventType.TEXT_MESSAGE_CONTENT).map((e) => e.delta).join("")
        expect(text).toBe("part1 part2 part3 part4 part5 ")
      }))
  }
)

layer(TestServer.layer({ model: failingModel }), { excludeTestServices: true, timeout: 60_000 })(
  "AG-UI with a failing model",
  (it) => {
    it.effect("a run that fails ends with RUN_ERROR and its code", () =>
      withServer(async (server) => {
        const threadId = await newThread(server, "alice")
        const agent = new HttpAgent({ url: `${server.httpUrl}/agui`, threadId, headers: await bearer("alice") })
        const events = await verified(agent, input(threadId, "fail please"))
        expect(types(events)).toContain(EventType.TEXT_MESSAGE_END)
        expect(events.at(-1)).toMatchObject({ type: EventType.RUN_ERROR, code: "llm_failed" })
        expect(types(events)).not.toContain(EventType.RUN_FINISHED)
      }))
  }
)

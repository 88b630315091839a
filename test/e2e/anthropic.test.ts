/**
 * The server with LLM_PROVIDER=anthropic against a fake Messages API, end
 * to end over WebSocket: a streamed answer with its usage, a tool_use and
 * its tool_result sent back by id, thinking blocks, failures (an error
 * status, an `error` event in the stream), cancel, a rate limit and the
 * history of an earlier run.
 */
import { afterEach, expect, layer } from "@effect/vitest"
import { FakeLlmServer } from "../utils/FakeLlmServer.ts"
import * as Fake from "../utils/FakeProviders.ts"
import {
  expectCalculatorCall,
  finished,
  KEY,
  llmRequests,
  modelHealth,
  remoteServer,
  send
} from "../utils/RemoteServer.ts"
import { TestServer, withServer } from "../utils/TestServer.ts"
import { until } from "../utils/until.ts"

const PATH = "/v1/messages"
/** An alias: the list names dated ids, and the alias resolves at /v1/models/{alias}. */
const MODEL = "claude-sonnet-4-5"
const fake = await FakeLlmServer.start()
const { config, model } = remoteServer("anthropic", fake.url, MODEL)

const requests = () => fake.requestsTo(PATH)
type Sse = ReturnType<typeof Fake.messagesText>
/** Index just past the first text delta of `answer`. */
const firstDelta = (answer: Sse) =>
  answer.events.findIndex((e: any) => e.type === "content_block_delta" && e.delta.type === "text_delta") + 1
/** The frames of `answer` up to its first text delta, then an `error` event, and the stream's end. */
const errorAfterFirstDelta = (answer: Sse, type: string, message: string): Sse => {
  const cut = firstDelta(answer)
  return {
    ...answer,
    events: [...answer.events.slice(0, cut), { type: "error", error: { type, message } }],
    eventNames: [...answer.eventNames!.slice(0, cut), "error"]
  }
}

const served = () => {
  fake.always("/v1/models", Fake.anthropicModels(["claude-opus-4-1-20250805", "claude-sonnet-4-5-20250929"]))
  fake.always(`/v1/models/${MODEL}`, {
    kind: "json",
    body: { type: "model", id: "claude-sonnet-4-5-20250929", display_name: "Claude Sonnet 4.5" }
  })
}
served()
afterEach(() => {
  fake.reset()
  served()
})

layer(
  TestServer.layer({ model, config }),
  { excludeTestServices: true, timeout: 60_000 }
)("LLM_PROVIDER=anthropic against a fake server", (it) => {
  it.effect("streams the answer, names the agent, and reports the message's usage on agent_completed", () =>
    withServer(async (server) => {
      fake.script(PATH, { ...Fake.messagesText(["Hello", ", world"], { usage: { input: 12, output: 3 } }), split: 13 })
      const { events, terminal } = await finished(server, "hi")
      expect(events[0]!.data).toMatchObject({ agent: `anthropic/${MODEL}` })
      expect(events.filter((e) => e.event_type === "agent_response_delta").map((e) => e.data.delta)).toEqual([
        "Hello",
        ", world"
      ])
      expect(terminal).toMatchObject({
        event_type: "agent_completed",
        data: { response: "Hello, world", usage: { input_tokens: 12, output_tokens: 3 } }
      })
      const [request] = requests()
      expect(request!.body).toMatchObject({ model: MODEL, stream: true, max_tokens: 4096 })
      expect(request!.headers["x-api-key"]).toBe(KEY)
    }))

  it.effect("runs a tool_use whose input came in pieces and sends its tool_result back by id", () =>
    withServer(async (server) => {
      fake.script(
        PATH,
        { ...Fake.messagesToolUse("toolu_01A", "calculator", ["{\"expre", "ssion\":\"6", "*7\"}"]), split: 7 },
        Fake.messagesText(["It is 42."])
      )
      const { events, terminal } = await finished(server, "what is 6*7?")
      expectCalculatorCall(events, "toolu_01A")
      // Both requests' usage (25 in, 15 out each).
      expect(terminal).toMatchObject({
        event_type: "agent_completed",
        data: { response: "It is 42.", usage: { input_tokens: 50, output_tokens: 30 } }
      })
      expect(requests()).toHaveLength(2)
      const messages = requests()[1]!.body.messages as Array<any>
      expect(messages.map((m) => m.role)).toEqual(["user", "assistant", "user"])
      expect(messages[1].content).toEqual([
        { type: "tool_use", id: "toolu_01A", name: "calculator", input: { expression: "6*7" } }
      ])
      const [result] = messages[2].content
      expect(result).toMatchObject({ type: "tool_result", tool_use_id: "toolu_01A", is_error: false })
      expect(JSON.parse(result.content)).toMatchObject({ result: 42 })
    }))

  it.effect("sends the thinking blocks as agent_thinking, before the answer", () =>
    withServer(async (server) => {
      fake.script(PATH, { ...Fake.messagesThinking(["The user wants", " a product."], ["42"]), split: 9 })
      const { events, terminal } = await finished(server, "what is 6*7?")
      expect(events.filter((e) => e.event_type === "agent_thinking").map((e) => e.data.text)).toEqual([
        "The user wants",
        " a product."
      ])
      const types = events.map((e) => e.event_type)
      expect(types.lastIndexOf("agent_thinking")).toBeLessThan(types.indexOf("agent_response_delta"))
      expect(terminal).toMatchObject({ event_type: "agent_completed", data: { response: "42" } })
    }))

  it.effect("ends the run llm_failed on a 401 or a 500, naming the provider and the status, never the key", () =>
    withServer(async (server) => {
      fake.script(
        PATH,
        Fake.anthropicError(401, "authentication_error", `invalid x-api-key: ${KEY}`),
        Fake.anthropicError(500, "api_error", "Internal server error")
      )
      const unauthorized = await finished(server, "hi")
      expect(unauthorized.terminal).toMatchObject({ event_type: "agent_error", data: { code: "llm_failed" } })
      expect(unauthorized.terminal.data.message).toMatch(/anthropic answered 401 .*invalid x-api-key/)
      const broken = await finished(server, "hi")
      expect(broken.terminal.data).toMatchObject({ code: "llm_failed" })
      expect(broken.terminal.data.message).toMatch(/anthropic answered 500 .*Internal server error/)
      // The key went out, and came back in the 401's words: no client saw it.
      expect(requests()[0]!.headers["x-api-key"]).toBe(KEY)
      for (const client of server.clients) expect(JSON.stringify(client.events())).not.toContain(KEY)
    }))

  it.effect("ends the run llm_failed on an overloaded_error event in the middle of a 200 stream", () =>
    withServer(async (server) => {
      fake.script(
        PATH,
        errorAfterFirstDelta(Fake.messagesText(["Half", " an answer"]), "overloaded_error", "Overloaded")
      )
      const [before, failedBefore] = [await modelHealth(server), await llmRequests(server, "anthropic", "failed")]
      const { events, terminal } = await finished(server, "hi")
      expect(events.filter((e) => e.event_type === "agent_response_delta").map((e) => e.data.delta)).toEqual(["Half"])
      expect(terminal).toMatchObject({ event_type: "agent_error", data: { code: "llm_failed" } })
      expect(terminal.data.message).toMatch(/anthropic .*Overloaded/)
      // Recorded as a failure of the model, as an error status is.
      expect(await modelHealth(server)).toMatchObject({
        failures_in_a_row: before.failures_in_a_row + 1,
        last_failure: { reason: terminal.data.message }
      })
      expect(await llmRequests(server, "anthropic", "failed")).toBe(failedBefore + 1)
    }))

  it.effect("ends the run llm_failed when the stream ends before message_stop", () =>
    withServer(async (server) => {
      const answer = Fake.messagesText(["Half", " an answer"])
      fake.script(PATH, { ...answer, events: answer.events.slice(0, -1), eventNames: answer.eventNames!.slice(0, -1) })
      const { terminal } = await finished(server, "hi")
      expect(terminal.data).toMatchObject({ code: "llm_failed" })
      expect(terminal.data.message).toContain("anthropic")
      expect((await modelHealth(server)).last_failure.reason).toBe(terminal.data.message)
    }))

  it.effect("cancel_run aborts the provider's request mid-stream and ends the run cancelled", () =>
    withServer(async (server) => {
      const answer = Fake.messagesText(["thinking about it", " at length"])
      fake.script(PATH, Fake.stalledAfter(answer, firstDelta(answer)))
      const { client, run_id, thread_id } = await send(server, "write a long essay")
      await until(async () => client.events(thread_id).some((e) => e.event_type === "agent_response_delta"), "a delta")
      await client.request({ type: "cancel_run", run_id })
      const terminal = await client.waitRunEnd(run_id)
      expect(terminal).toMatchObject({ event_type: "agent_error", data: { code: "cancelled" } })
      await until(async () => requests()[0]!.aborted, "the provider's request aborted")
      expect(requests()[0]!.finished).toBe(false)
    }))

  it.effect("retries a 429 after its Retry-After, then answers", () =>
    withServer(async (server) => {
      fake.script(PATH, {
        kind: "json",
        status: 429,
        headers: { "retry-after": "1" },
        body: {
          type: "error",
          error: { type: "rate_limit_error", message: "Number of requests has exceeded your rate limit" }
        }
      }, Fake.messagesText(["after the wait"]))
      const started = Date.now()
      const { terminal } = await finished(server, "hi")
      expect(terminal).toMatchObject({ event_type: "agent_completed", data: { response: "after the wait" } })
      expect(requests()).toHaveLength(2)
      expect(Date.now() - started).toBeGreaterThanOrEqual(900)
    }))

  it.effect("sends the first run's message and answer in the next run's messages, each author named", () =>
    withServer(async (server) => {
      fake.script(PATH, Fake.messagesText(["It is 42."]), Fake.messagesText(["You asked about 6*7."]))
      const first = await finished(server, "what is 6*7?")
      expect(first.terminal.event_type).toBe("agent_completed")
      const second = await finished(server, "what did I ask?", "bob", first.thread_id)
      expect(second.terminal).toMatchObject({
        event_type: "agent_completed",
        data: { response: "You asked about 6*7." }
      })
      const body = requests()[1]!.body
      expect(body.system).toEqual([{ type: "text", text: expect.stringContaining("helpful assistant") }])
      expect(body.messages).toEqual([
        { role: "user", content: [{ type: "text", text: "alice: what is 6*7?" }] },
        { role: "assistant", content: [{ type: "text", text: "It is 42." }] },
        { role: "user", content: [{ type: "text", text: "bob: what did I ask?" }] }
      ])
    }))
})

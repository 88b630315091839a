/**
 * The server with LLM_PROVIDER=openai-responses against a fake Responses
 * API, end to end over WebSocket: a streamed answer with its usage, a tool
 * call and its result sent back by call id, reasoning summaries, failures
 * (an error status, an `error` event in the stream), cancel, a rate limit
 * and the history of an earlier run.
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

const PATH = "/v1/responses"
const PROVIDER = "openai-responses"
const MODEL = "gpt-4.1"
const fake = await FakeLlmServer.start()
const { config, model } = remoteServer(PROVIDER, `${fake.url}/v1`, MODEL)

const requests = () => fake.requestsTo(PATH)
/** The frames of `answer` up to its first text delta, then an `error` event, and the stream's end. */
const errorAfterFirstDelta = (answer: ReturnType<typeof Fake.responsesText>, message: string) => {
  const cut = answer.events.findIndex((e) => (e as { type: string }).type === "response.output_text.delta") + 1
  const error = { type: "error", sequence_number: cut, code: "server_error", message, param: null }
  return {
    ...answer,
    events: [...answer.events.slice(0, cut), error],
    eventNames: [...answer.eventNames!.slice(0, cut), "error"]
  }
}

const served = () => fake.always("/v1/models", Fake.openAiModels(["gpt-4o", MODEL]))
served()
afterEach(() => {
  fake.reset()
  served()
})

layer(
  TestServer.layer({ model, config }),
  { excludeTestServices: true, timeout: 60_000 }
)("LLM_PROVIDER=openai-responses against a fake server", (it) => {
  it.effect("streams the answer, names the agent, and reports the response's usage on agent_completed", () =>
    withServer(async (server) => {
      fake.script(PATH, { ...Fake.responsesText(["Hello", ", world"], { usage: { input: 12, output: 3 } }), split: 13 })
      const { events, terminal } = await finished(server, "hi")
      expect(events[0]!.data).toMatchObject({ agent: `openai-responses/${MODEL}` })
      expect(events.filter((e) => e.event_type === "agent_response_delta").map((e) => e.data.delta)).toEqual([
        "Hello",
        ", world"
      ])
      expect(terminal).toMatchObject({
        event_type: "agent_completed",
        data: { response: "Hello, world", usage: { input_tokens: 12, output_tokens: 3 } }
      })
      const [request] = requests()
      expect(request!.body).toMatchObject({ model: MODEL, stream: true })
      expect(request!.headers.authorization).toBe(`Bearer ${KEY}`)
    }))

  it.effect("runs a tool call whose arguments came in pieces and sends its output back by call id", () =>
    withServer(async (server) => {
      fake.script(
        PATH,
        { ...Fake.responsesToolCall("call_42", "calculator", ["{\"expre", "ssion\":\"6", "*7\"}"]), split: 7 },
        Fake.responsesText(["It is 42."])
      )
      const { events, terminal } = await finished(server, "what is 6*7?")
      expectCalculatorCall(events, "call_42")
      // Both requests' usage (37 in, 11 out each).
      expect(terminal).toMatchObject({
        event_type: "agent_completed",
        data: { response: "It is 42.", usage: { input_tokens: 74, output_tokens: 22 } }
      })
      expect(requests()).toHaveLength(2)
      const input = requests()[1]!.body.input as Array<any>
      expect(input.find((i) => i.type === "function_call")).toMatchObject({
        call_id: "call_42",
        name: "calculator",
        arguments: "{\"expression\":\"6*7\"}"
      })
      const output = input.find((i) => i.type === "function_call_output")
      expect(output.call_id).toBe("call_42")
      expect(JSON.parse(output.output)).toMatchObject({ result: 42 })
    }))

  it.effect("sends the reasoning summary as agent_thinking, before the answer", () =>
    withServer(async (server) => {
      fake.script(PATH, { ...Fake.responsesReasoning(["The user wants", " a product."], ["42"]), split: 9 })
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
        Fake.openAiError(401, `Incorrect API key provided: ${KEY}.`, "invalid_request_error", "invalid_api_key"),
        Fake.openAiError(500, "The server had an error while processing your request.", "server_error")
      )
      const unauthorized = await finished(server, "hi")
      expect(unauthorized.terminal).toMatchObject({ event_type: "agent_error", data: { code: "llm_failed" } })
      expect(unauthorized.terminal.data.message).toMatch(/openai-responses answered 401 .*Incorrect API key/)
      const broken = await finished(server, "hi")
      expect(broken.terminal.data).toMatchObject({ code: "llm_failed" })
      expect(broken.terminal.data.message).toMatch(/openai-responses answered 500 .*The server had an error/)
      // The key went out, and came back in the 401's words: no client saw it.
      expect(requests()[0]!.headers.authorization).toBe(`Bearer ${KEY}`)
      for (const client of server.clients) expect(JSON.stringify(client.events())).not.toContain(KEY)
    }))

  it.effect("ends the run llm_failed on an error event in the middle of a 200 stream, a model failure like a status", () =>
    withServer(async (server) => {
      const said = `The model is overloaded (request with key ${KEY}).`
      fake.script(PATH, errorAfterFirstDelta(Fake.responsesText(["Half", " an answer"]), said))
      const [before, failedBefore] = [await modelHealth(server), await llmRequests(server, PROVIDER, "failed")]
      const { client, events, terminal } = await finished(server, "hi")
      expect(events.filter((e) => e.event_type === "agent_response_delta").map((e) => e.data.delta)).toEqual(["Half"])
      expect(terminal).toMatchObject({ event_type: "agent_error", data: { code: "llm_failed" } })
      expect(terminal.data.message).toMatch(/openai-responses .*The model is overloaded/)
      expect(JSON.stringify(client.events())).not.toContain(KEY)
      // Recorded as a failure of the model, as an error status is.
      expect(await modelHealth(server)).toMatchObject({
        failures_in_a_row: before.failures_in_a_row + 1,
        last_failure: { reason: terminal.data.message }
      })
      expect(await llmRequests(server, PROVIDER, "failed")).toBe(failedBefore + 1)
    }))

  it.effect("ends the run llm_failed when the stream ends before the response completed", () =>
    withServer(async (server) => {
      const answer = Fake.responsesText(["Half", " an answer"])
      fake.script(PATH, { ...answer, events: answer.events.slice(0, -1), eventNames: answer.eventNames!.slice(0, -1) })
      const { terminal } = await finished(server, "hi")
      expect(terminal.data).toMatchObject({ code: "llm_failed" })
      expect(terminal.data.message).toContain("openai-responses")
      expect((await modelHealth(server)).last_failure.reason).toBe(terminal.data.message)
    }))

  it.effect("ends the run llm_failed on response.failed, with the provider's words, not as a completed answer", () =>
    withServer(async (server) => {
      const answer = Fake.responsesText(["Half"])
      const completed = answer.events.at(-1) as { response: Record<string, unknown>; sequence_number: number }
      const failed = {
        type: "response.failed",
        sequence_number: completed.sequence_number,
        response: {
          ...completed.response,
          status: "failed",
          error: { code: "server_error", message: "The model crashed" },
          usage: null
        }
      }
      fake.script(PATH, {
        ...answer,
        events: [...answer.events.slice(0, -1), failed],
        eventNames: [...answer.eventNames!.slice(0, -1), "response.failed"]
      })
      const { terminal } = await finished(server, "hi")
      expect(terminal).toMatchObject({ event_type: "agent_error", data: { code: "llm_failed" } })
      expect(terminal.data.message).toBe(
        "openai-responses reported an error in its answer: The model crashed (server_error)"
      )
    }))

  it.effect("cancel_run aborts the provider's request mid-stream and ends the run cancelled", () =>
    withServer(async (server) => {
      const answer = Fake.responsesText(["thinking about it", " at length"])
      const cut = answer.events.findIndex((e) => (e as { type: string }).type === "response.output_text.delta") + 1
      fake.script(PATH, Fake.stalledAfter(answer, cut))
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
        body: { error: { message: "Rate limit reached for gpt-4.1", type: "requests", param: null, code: null } }
      }, Fake.responsesText(["after the wait"]))
      const started = Date.now()
      const { terminal } = await finished(server, "hi")
      expect(terminal).toMatchObject({ event_type: "agent_completed", data: { response: "after the wait" } })
      expect(requests()).toHaveLength(2)
      expect(Date.now() - started).toBeGreaterThanOrEqual(900)
    }))

  it.effect("sends the first run's message and answer in the next run's input, each author named", () =>
    withServer(async (server) => {
      fake.script(PATH, Fake.responsesText(["It is 42."]), Fake.responsesText(["You asked about 6*7."]))
      const first = await finished(server, "what is 6*7?")
      expect(first.terminal.event_type).toBe("agent_completed")
      const second = await finished(server, "what did I ask?", "bob", first.thread_id)
      expect(second.terminal).toMatchObject({
        event_type: "agent_completed",
        data: { response: "You asked about 6*7." }
      })
      const input = requests()[1]!.body.input as Array<any>
      expect(input.map((i) => i.role)).toEqual(["system", "user", "assistant", "user"])
      expect(input[1]).toEqual({ role: "user", content: [{ type: "input_text", text: "alice: what is 6*7?" }] })
      expect(input[2]).toMatchObject({ role: "assistant", content: [{ type: "output_text", text: "It is 42." }] })
      expect(input[3]).toEqual({ role: "user", content: [{ type: "input_text", text: "bob: what did I ask?" }] })
    }))
})

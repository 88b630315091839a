/**
 * The server with LLM_PROVIDER=openai-chat against a fake Chat Completions
 * server, end to end over WebSocket: streamed answers, tools, thinking,
 * usage, history, failures, rate limits, stalls and cancel.
 */
import { FetchHttpClient } from "@effect/platform"
import { afterEach, expect, layer } from "@effect/vitest"
import { Duration, Effect, Layer, Option, Redacted } from "effect"
import { makeTestConfig } from "../../src/config/AppConfig.ts"
import { EventLog } from "../../src/eventlog/EventLog.ts"
import { remoteModel } from "../../src/llm/Providers.ts"
import { callPieces, delta, finish, sse, usage } from "../llm/OpenAiChatHarness.ts"
import { FakeLlmServer } from "../utils/FakeLlmServer.ts"
import { expectRunShape } from "../utils/invariants.ts"
import { service, TestServer, type TestServerShape, withServer } from "../utils/TestServer.ts"
import { until } from "../utils/until.ts"

const PATH = "/v1/chat/completions"
const KEY = "sk-e2e-secret-4242"
const fake = await FakeLlmServer.start()

const config = {
  llm: {
    ...makeTestConfig().llm,
    provider: Option.some("openai-chat" as const),
    baseUrl: Option.some(`${fake.url}/v1`),
    apiKey: Option.some(Redacted.make(KEY)),
    model: Option.some("test-model"),
    requestTimeout: Duration.millis(800),
    rateLimitRetry: { attempts: 2, maxDelay: Duration.seconds(2) },
    historyChars: 12_000
  },
  runTimeout: Duration.seconds(10)
}
const settings = {
  provider: "openai-chat" as const,
  baseUrl: `${fake.url}/v1`,
  apiKey: config.llm.apiKey,
  model: "test-model",
  maxOutputTokens: Option.none(),
  temperature: Option.none(),
  requestTimeout: config.llm.requestTimeout
}
const model = remoteModel(settings, makeTestConfig(config)).pipe(Layer.provide(FetchHttpClient.layer))

const answer = (...pieces: Array<string>) =>
  sse([...pieces.map((content) => delta({ content })), finish("stop"), "data: [DONE]"])

const send = async (server: TestServerShape, content: string, userId = "alice", threadId?: string) => {
  const client = await server.connect(userId)
  const thread_id = threadId ?? (await client.request({ type: "create_thread", members: ["bob"] })).thread_id
  if (threadId !== undefined) await client.request({ type: "join_thread", thread_id })
  const sent = await client.request({ type: "send_message", thread_id, content })
  return { client, thread_id, run_id: sent.run_id as string }
}

const finished = async (server: TestServerShape, content: string, userId = "alice", threadId?: string) => {
  const sent = await send(server, content, userId, threadId)
  const terminal = await sent.client.waitRunEnd(sent.run_id)
  return { ...sent, terminal, events: expectRunShape(sent.client.events(sent.thread_id), sent.run_id) }
}

const requests = () => fake.requestsTo(PATH)

const served = () => fake.always("/v1/models", { kind: "json", body: { object: "list", data: [{ id: "test-model" }] } })
served()
afterEach(() => {
  fake.reset()
  served()
})

layer(
  TestServer.layer({ model, config: makeTestConfig(config) }),
  { excludeTestServices: true, timeout: 60_000 }
)("LLM_PROVIDER=openai-chat against a fake server", (it) => {
  it.effect("streams the answer, names the agent, and reports usage on agent_completed", () =>
    withServer(async (server) => {
      fake.script(
        PATH,
        sse([
          delta({ role: "assistant", content: "" }),
          delta({ content: "Hello" }),
          delta({ content: ", world" }),
          finish("stop"),
          usage({ prompt_tokens: 12, completion_tokens: 3, total_tokens: 15 }),
          "data: [DONE]"
        ], { split: [5, 3, 11] })
      )
      const { events, terminal } = await finished(server, "hi")
      expect(events[0]!.data).toMatchObject({ agent: "openai-chat/test-model" })
      expect(events.filter((e) => e.event_type === "agent_response_delta").map((e) => e.data.delta)).toEqual([
        "Hello",
        ", world"
      ])
      expect(terminal).toMatchObject({
        event_type: "agent_completed",
        data: { response: "Hello, world", usage: { input_tokens: 12, output_tokens: 3 } }
      })
      // Stored on the run too.
      const run = await Effect.runPromise(service(server, EventLog).findRun(terminal.run_id!))
      expect(Option.getOrThrow(run)).toMatchObject({
        status: "completed",
        usage: { input_tokens: 12, output_tokens: 3 }
      })
      const [request] = requests()
      expect(request!.body).toMatchObject({ model: "test-model", stream: true })
      expect(request!.headers.authorization).toBe(`Bearer ${KEY}`)
    }))

  it.effect("runs two parallel tool calls through the dispatcher and sends their results back by id", () =>
    withServer(async (server) => {
      fake.script(
        PATH,
        sse([
          delta({ reasoning_content: "Two sums to do." }),
          ...callPieces(0, "call_a", "{\"expr", "ession\": \"2", "+2\"}"),
          ...callPieces(1, "call_b", "{\"expression\":", " \"3*3\"}"),
          finish("tool_calls"),
          "data: [DONE]"
        ]),
        answer("4 and 9")
      )
      const { events, terminal } = await finished(server, "what are 2+2 and 3*3?")
      expect(events.find((e) => e.event_type === "agent_thinking")!.data).toEqual({ text: "Two sums to do." })
      const completed = events.filter((e) => e.event_type === "tool_completed").map((e) => e.data)
      expect(completed).toMatchObject([
        { tool_call_id: "call_a", tool: "calculator", output: { result: 4 } },
        { tool_call_id: "call_b", tool: "calculator", output: { result: 9 } }
      ])
      expect(terminal).toMatchObject({ event_type: "agent_completed", data: { response: "4 and 9" } })
      const second = requests()[1]!.body.messages as Array<any>
      const assistant = second.find((m) => m.role === "assistant")
      expect(assistant.tool_calls.map((c: any) => c.id)).toEqual(["call_a", "call_b"])
      const results = second.filter((m) => m.role === "tool")
      expect(results.map((m) => m.tool_call_id)).toEqual(["call_a", "call_b"])
      expect(JSON.parse(results[1].content)).toMatchObject({ result: 9 })
      // Each tool's JSON Schema comes from its Schema.
      const tools = requests()[0]!.body.tools as Array<any>
      expect(tools.find((t) => t.function.name === "calculator").function.parameters).toMatchObject({
        type: "object",
        required: ["expression"],
        properties: { expression: { type: "string" } }
      })
    }))

  it.effect("sends the earlier answers, tool calls and results in the next run's history, each author named", () =>
    withServer(async (server) => {
      fake.script(
        PATH,
        sse([...callPieces(0, "call_1", "{\"expression\":\"6*7\"}"), finish("tool_calls"), "data: [DONE]"]),
        answer("It is 42."),
        answer("You asked about 6*7.")
      )
      const first = await finished(server, "what is 6*7?")
      expect(first.terminal.event_type).toBe("agent_completed")
      await finished(server, "what did I ask?", "bob", first.thread_id)
      const messages = requests()[2]!.body.messages as Array<any>
      expect(messages.map((m) => m.role)).toEqual(["system", "user", "assistant", "tool", "assistant", "user"])
      expect(messages[1].content).toBe("alice: what is 6*7?")
      expect(messages[2].tool_calls[0]).toMatchObject({ id: "call_1", function: { name: "calculator" } })
      expect(JSON.parse(messages[3].content)).toMatchObject({ result: 42 })
      expect(messages[4].content).toBe("It is 42.")
      expect(messages[5].content).toBe("bob: what did I ask?")
    }))

  it.effect("keeps the newest history within LLM_HISTORY_CHARS, dropping the oldest messages first", () =>
    withServer(async (server) => {
      fake.script(PATH, answer("one"), answer("two"), answer("three"))
      const first = await finished(server, `${"x".repeat(8_000)} (the oldest)`)
      await finished(server, "y".repeat(5_000), "alice", first.thread_id)
      await finished(server, "the newest", "alice", first.thread_id)
      const messages = requests()[2]!.body.messages as Array<any>
      // A budget of 12,000 characters: the oldest message and its answer no longer fit beside the rest.
      expect(messages.map((m) => m.role)).toEqual(["system", "user", "assistant", "user"])
      expect(messages[1].content).toBe(`alice: ${"y".repeat(5_000)}`)
      expect(messages[2].content).toBe("two")
      expect(messages[3].content).toBe("alice: the newest")
      expect(JSON.stringify(messages)).not.toContain("(the oldest)")
    }))

  it.effect("frames a call to a tool that does not exist, tells the model, and goes on", () =>
    withServer(async (server) => {
      fake.script(
        PATH,
        sse([
          delta({ tool_calls: [{ index: 0, id: "call_x", type: "function", function: { name: "teleport" } }] }),
          delta({ tool_calls: [{ index: 0, function: { arguments: "{\"to\":\"mars\"}" } }] }),
          finish("tool_calls"),
          "data: [DONE]"
        ]),
        answer("I cannot teleport.")
      )
      const { events, terminal } = await finished(server, "teleport me")
      expect(events.find((e) => e.event_type === "tool_executing")!.data).toMatchObject({
        tool_call_id: "call_x",
        tool: "teleport",
        input: { to: "mars" }
      })
      expect(events.find((e) => e.event_type === "tool_completed")!.data).toMatchObject({
        tool: "teleport",
        error: "unknown tool \"teleport\""
      })
      expect(terminal).toMatchObject({ event_type: "agent_completed", data: { response: "I cannot teleport." } })
      const tool = (requests()[1]!.body.messages as Array<any>).find((m) => m.role === "tool")
      expect(tool).toMatchObject({ tool_call_id: "call_x" })
    }))

  it.effect("ends the run llm_failed on a 500 or a 401, naming the provider and the status, never the key", () =>
    withServer(async (server) => {
      fake.script(PATH, {
        kind: "json",
        status: 401,
        body: { error: { message: `Incorrect API key provided: ${KEY}` } }
      }, {
        kind: "json",
        status: 500,
        body: { error: { message: "the GPUs are on fire" } }
      })
      const unauthorized = await finished(server, "hi")
      expect(unauthorized.terminal).toMatchObject({ event_type: "agent_error", data: { code: "llm_failed" } })
      expect(unauthorized.terminal.data.message).toMatch(/openai-chat.*401/)
      expect(JSON.stringify(unauthorized.events)).not.toContain(KEY)
      const broken = await finished(server, "hi")
      expect(broken.terminal.data).toMatchObject({ code: "llm_failed" })
      expect(broken.terminal.data.message).toMatch(/openai-chat.*500.*the GPUs are on fire/)
    }))

  it.effect("ends the run llm_failed on an error in the middle of the stream, after what streamed", () =>
    withServer(async (server) => {
      fake.script(PATH, sse([delta({ content: "Half" }), { error: { message: "model overloaded" } }]))
      const { events, terminal } = await finished(server, "hi")
      expect(events.some((e) => e.event_type === "agent_response_delta")).toBe(true)
      expect(terminal.data).toMatchObject({ code: "llm_failed" })
      expect(terminal.data.message).toContain("model overloaded")
    }))

  it.effect("retries a 429 after its Retry-After, then answers", () =>
    withServer(async (server) => {
      fake.script(PATH, {
        kind: "json",
        status: 429,
        headers: { "retry-after": "1" },
        body: { error: { message: "slow down" } }
      }, answer("after the wait"))
      const started = Date.now()
      const { terminal } = await finished(server, "hi")
      expect(terminal).toMatchObject({ event_type: "agent_completed", data: { response: "after the wait" } })
      expect(requests()).toHaveLength(2)
      expect(Date.now() - started).toBeGreaterThanOrEqual(900)
    }))

  it.effect("gives up on a rate limit after the configured retries, with llm_failed naming 429", () =>
    withServer(async (server) => {
      const limited = { kind: "json" as const, status: 429, headers: { "retry-after": "0" }, body: {} }
      fake.script(PATH, limited, limited, limited, answer("never sent"))
      const { terminal } = await finished(server, "hi")
      expect(terminal.data).toMatchObject({ code: "llm_failed" })
      expect(terminal.data.message).toContain("429")
      expect(requests()).toHaveLength(3)
    }))

  it.effect("ends the run timeout when no byte comes, and when the stream stalls between chunks", () =>
    withServer(async (server) => {
      fake.script(PATH, { kind: "silent" }, sse([delta({ content: "so far" })], { hang: true }))
      const silent = await finished(server, "hi")
      expect(silent.terminal.data).toMatchObject({ code: "timeout" })
      expect(silent.terminal.data.message).toContain("openai-chat")
      const stalled = await finished(server, "hi")
      expect(stalled.terminal.data).toMatchObject({ code: "timeout" })
      await until(async () => requests().every((r) => r.aborted), "the stalled requests closed")
    }))

  it.effect("cancel_run aborts the provider's request at once and ends the run cancelled", () =>
    withServer(async (server) => {
      fake.script(PATH, sse([delta({ content: "thinking about it" })], { hang: true }))
      const { client, run_id, thread_id } = await send(server, "write a long essay")
      await until(async () => client.events(thread_id).some((e) => e.event_type === "agent_response_delta"), "a delta")
      await client.request({ type: "cancel_run", run_id })
      const terminal = await client.waitRunEnd(run_id)
      expect(terminal.data).toMatchObject({ code: "cancelled" })
      await until(async () => requests()[0]!.aborted, "the provider's request aborted")
    }))

  it.effect("shows the model on /health/ready with its last failure, down after three in a row", () =>
    withServer(async (server) => {
      const failing = { kind: "json" as const, status: 503, body: { error: { message: "maintenance" } } }
      fake.script(PATH, answer("fine"), failing, failing, failing)
      for (let i = 0; i < 4; i++) await finished(server, "hi")
      const down = await (await server.fetch("/health/ready")).json()
      expect(down.status).toBe("degraded")
      expect(down.components.model).toMatchObject({
        status: "down",
        provider: "openai-chat",
        model: "test-model",
        failures_in_a_row: 3
      })
      expect(down.components.model.last_failure.reason).toContain("503")
      const metrics = await (await server.fetch("/metrics")).text()
      expect(metrics).toMatch(/agentchat_llm_requests_total\{[^}]*outcome="failed"[^}]*\} [1-9]/)
      fake.script(PATH, answer("back"))
      await finished(server, "hi")
      const up = await (await server.fetch("/health/ready")).json()
      expect(up.components.model).toMatchObject({ status: "up", failures_in_a_row: 0 })
    }))
})

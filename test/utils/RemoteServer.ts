/**
 * A real server whose model is a remote provider (`remoteModel` over the
 * fetch HttpClient) pointed at a FakeLlmServer, and the client steps its
 * end-to-end suites take: send a message in a new or a shared thread, and
 * wait for the run's end with its events checked against the run rules.
 */
import { FetchHttpClient } from "@effect/platform"
import { expect } from "@effect/vitest"
import { Duration, Layer, Option, Redacted } from "effect"
import { makeTestConfig } from "../../src/config/AppConfig.ts"
import { remoteModel } from "../../src/llm/Providers.ts"
import type { RemoteProvider } from "../../src/llm/Settings.ts"
import type { EventFrame } from "./ChatClient.ts"
import { expectRunShape } from "./invariants.ts"
import type { TestServerShape } from "./TestServer.ts"

/** The key every suite configures, and asserts never reaches a client. */
export const KEY = "sk-e2e-secret-4242"

/** The config and the model of a server whose `provider` serves `model` at `baseUrl`. */
export const remoteServer = (provider: RemoteProvider, baseUrl: string, model: string) => {
  const overrides = {
    llm: {
      ...makeTestConfig().llm,
      provider: Option.some(provider),
      baseUrl: Option.some(baseUrl),
      apiKey: Option.some(Redacted.make(KEY)),
      model: Option.some(model),
      // No suite here tests a stall (openai-chat.test.ts does): generous, so a loaded machine does not cut a
      // stream off between two pieces.
      requestTimeout: Duration.seconds(5),
      rateLimitRetry: { attempts: 2, maxDelay: Duration.seconds(2) }
    },
    runTimeout: Duration.seconds(10)
  }
  const config = makeTestConfig(overrides)
  const settings = {
    provider,
    baseUrl,
    apiKey: overrides.llm.apiKey,
    model,
    maxOutputTokens: Option.none(),
    temperature: Option.none(),
    requestTimeout: overrides.llm.requestTimeout
  }
  return { config, model: remoteModel(settings, config).pipe(Layer.provide(FetchHttpClient.layer)) }
}

/** Sends `content` as `userId`, in a new thread with bob, or joining `threadId`. */
export const send = async (server: TestServerShape, content: string, userId = "alice", threadId?: string) => {
  const client = await server.connect(userId)
  const thread_id = threadId ?? (await client.request({ type: "create_thread", members: ["bob"] })).thread_id
  if (threadId !== undefined) await client.request({ type: "join_thread", thread_id })
  const sent = await client.request({ type: "send_message", thread_id, content })
  return { client, thread_id, run_id: sent.run_id as string }
}

/** Sends `content` and waits for its run to end: its terminal event, and its events (shape checked). */
export const finished = async (server: TestServerShape, content: string, userId = "alice", threadId?: string) => {
  const sent = await send(server, content, userId, threadId)
  const terminal = await sent.client.waitRunEnd(sent.run_id)
  return { ...sent, terminal, events: expectRunShape(sent.client.events(sent.thread_id), sent.run_id) }
}

/** The `model` component of /health/ready. */
export const modelHealth = async (server: TestServerShape): Promise<Record<string, any>> =>
  (await (await server.fetch("/health/ready")).json()).components.model

/** agentchat_llm_requests_total of `provider` with `outcome`, from /metrics (0 before the first). */
export const llmRequests = async (server: TestServerShape, provider: string, outcome: string): Promise<number> => {
  const metrics = await (await server.fetch("/metrics")).text()
  const line = metrics.split("\n").find((l) =>
    l.startsWith("agentchat_llm_requests_total{") && l.includes(`provider="${provider}"`) &&
    l.includes(`outcome="${outcome}"`)
  )
  return line === undefined ? 0 : Number(line.split(" ").at(-1))
}

/** The run called the calculator on 6*7 under `callId`, framed by tool_executing and tool_completed. */
export const expectCalculatorCall = (events: ReadonlyArray<EventFrame>, callId: string) => {
  expect(events.find((e) => e.event_type === "tool_executing")!.data).toMatchObject({
    tool_call_id: callId,
    tool: "calculator",
    input: { expression: "6*7" }
  })
  expect(events.find((e) => e.event_type === "tool_completed")!.data).toMatchObject({
    tool_call_id: callId,
    tool: "calculator",
    output: { result: 42 }
  })
}

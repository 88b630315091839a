/**
 * The server process with a real-model provider, as `npm start` runs it:
 * it chats through an OpenAI-compatible server, and refuses to start when
 * that server does not serve the configured model.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { FakeLlmServer } from "./utils/FakeLlmServer.ts"
import { devClient, freePort, startMain, waitForStatus } from "./utils/process.ts"

const chunk = (delta: object, finish: string | null = null) => ({
  id: "c-1",
  object: "chat.completion.chunk",
  created: 1,
  model: "llama3.2",
  choices: [{ index: 0, delta, finish_reason: finish }]
})

const withFake = async (body: (fake: FakeLlmServer, dataDir: string) => Promise<void>) => {
  const fake = await FakeLlmServer.start()
  const dataDir = mkdtempSync(join(tmpdir(), "agent-chat-model-"))
  try {
    fake.always("/v1/models", { kind: "json", body: { object: "list", data: [{ id: "llama3.2" }, { id: "qwen2.5" }] } })
    await body(fake, dataDir)
  } finally {
    await fake.close()
    rmSync(dataDir, { recursive: true, force: true })
  }
}

describe("the server process with LLM_PROVIDER=openai-chat", () => {
  it.live(
    "chats with an OpenAI-compatible server, tools included",
    () =>
      Effect.promise(() =>
        withFake(async (fake, dataDir) => {
          fake.script("/v1/chat/completions", {
            kind: "sse",
            events: [
              chunk({ tool_calls: [{ index: 0, id: "call_1", type: "function", function: { name: "calculator" } }] }),
              chunk({ tool_calls: [{ index: 0, function: { arguments: "{\"expression\":\"2^10\"}" } }] }),
              chunk({}, "tool_calls"),
              "data: [DONE]"
            ]
          }, {
            kind: "sse",
            events: [chunk({ content: "2^10 is " }), chunk({ content: "1024." }), chunk({}, "stop"), "data: [DONE]"]
          })
          const port = await freePort()
          const server = startMain({
            PORT: String(port),
            HOST: "127.0.0.1",
            DATA_DIR: dataDir,
            SHUTDOWN_GRACE_MS: "0",
            LLM_PROVIDER: "openai-chat",
            LLM_BASE_URL: `${fake.url}/v1`,
            LLM_MODEL: "llama3.2"
          })
          try {
            await waitForStatus(`http://127.0.0.1:${port}/health/ready`, 200, 60_000)
            const health = await (await fetch(`http://127.0.0.1:${port}/health/ready`)).json()
            expect(health.components.model).toMatchObject({
              status: "up",
              provider: "openai-chat",
              model: "llama3.2",
              base_url: `${fake.url}/v1`
            })
            const { client } = await devClient(port, "alice")
            const { thread_id } = await client.request({ type: "create_thread" })
            const sent = await client.request({ type: "send_message", thread_id, content: "what is 2^10?" })
            const terminal = await client.waitRunEnd(sent.run_id)
            expect(terminal.data).toMatchObject({ response: "2^10 is 1024." })
            const completed = client.events(thread_id).find((e) => e.event_type === "tool_completed")
            expect(completed?.data).toMatchObject({ tool: "calculator", output: { result: 1024 } })
            expect(fake.requestsTo("/v1/models")).toHaveLength(1)
            client.ws.close()
          } finally {
            server.child.kill("SIGTERM")
            await server.exited
          }
        })
      ),
    90_000
  )

  // Production with the machine's PostgreSQL when the suites have one; development (embedded) always.
  const modes: ReadonlyArray<readonly [string, Record<string, string>]> = [
    ["development", {}],
    ...(process.env.TEST_DATABASE_URL === undefined || process.env.TEST_DATABASE_URL === "" ? [] : [
      [
        "production",
        {
          APP_ENV: "production",
          DATABASE_URL: process.env.TEST_DATABASE_URL,
          JWT_SECRET: "a-production-secret-of-enough-length"
        }
      ] as const
    ])
  ]

  it.live.each(modes)(
    "refuses to start in %s, naming the provider, the URL and the model, when the model is not served",
    ([, env]) =>
      Effect.promise(() =>
        withFake(async (fake, dataDir) => {
          const port = await freePort()
          const exited = await startMain({
            ...env,
            PORT: String(port),
            HOST: "127.0.0.1",
            DATA_DIR: dataDir,
            LLM_PROVIDER: "openai-chat",
            LLM_BASE_URL: `${fake.url}/v1`,
            LLM_MODEL: "gpt-9",
            LLM_API_KEY: "sk-process-secret",
            STARTUP_RETRY_ATTEMPTS: "2",
            STARTUP_RETRY_BASE_MS: "50"
          }).exited
          expect(exited.code).not.toBe(0)
          expect(exited.output).toContain("Model failed to start")
          expect(exited.output).toContain("gpt-9")
          expect(exited.output).toContain(`${fake.url}/v1/models`)
          expect(exited.output).toMatch(/openai-chat/)
          expect(exited.output).toMatch(/it serves: llama3\.2, qwen2\.5/)
          expect(exited.output).not.toContain("sk-process-secret")
          expect(fake.requestsTo("/v1/models").length).toBe(2)
          expect(await fetch(`http://127.0.0.1:${port}/health/live`).then(() => "open", () => "closed")).toBe("closed")
        })
      ),
    90_000
  )
})

/**
 * How the openai-chat provider fails: the errors a provider reports (a
 * status, an error object mid-stream), what it sends that cannot be read,
 * a stream cut short, a refused connection; and a consumer that stops or
 * is interrupted closes the connection.
 */
import { LanguageModel } from "@effect/ai"
import { describe, expect, it } from "@effect/vitest"
import { Chunk, Effect, Fiber, Option, Redacted, Stream } from "effect"
import { FakeLlmServer } from "../utils/FakeLlmServer.ts"
import {
  aborted,
  callPieces,
  delta,
  fakeServer,
  finish,
  PATH,
  provide,
  settingsFor,
  sse,
  streamError
} from "./OpenAiChatHarness.ts"

describe("openai-chat failures", () => {
  it.scopedLive("an error object mid-stream fails the stream with the provider's message", () =>
    Effect.gen(function*() {
      const fake = yield* fakeServer
      fake.script(
        PATH,
        sse([delta({ content: "Hal" }), { error: { message: "The server had an error", type: "server_error" } }])
      )
      const error = yield* streamError(settingsFor(fake))
      expect(error._tag).toBe("UnknownError")
      expect(error.message).toBe(
        "openai-chat: the provider reported an error mid-stream: The server had an error (server_error)"
      )
    }))

  it.scopedLive("a data line that is not JSON, or tool arguments that are not JSON, fail as malformed", () =>
    Effect.gen(function*() {
      const fake = yield* fakeServer
      fake.script(
        PATH,
        sse([delta({ content: "a" }), "data: {\"choices\": [", "data: [DONE]"]),
        sse([...callPieces(0, "call_1", "{\"expression\": 2+"), finish("tool_calls"), "data: [DONE]"])
      )
      const notJson = yield* streamError(settingsFor(fake))
      expect(notJson._tag).toBe("MalformedOutput")
      expect(notJson.message).toBe("openai-chat: a stream line is not JSON: {\"choices\": [")
      const badArgs = yield* streamError(settingsFor(fake))
      expect(badArgs._tag).toBe("MalformedOutput")
      expect(badArgs.message).toBe(
        "openai-chat: the arguments of tool call calculator (call_1) are not valid JSON: {\"expression\": 2+"
      )
    }))

  it.scopedLive("a cut stream, or one ending without [DONE] or a finish_reason, fails", () =>
    Effect.gen(function*() {
      const fake = yield* fakeServer
      fake.script(PATH, sse([delta({ content: "half" })], { cut: true }), sse([delta({ content: "half" })]))
      const cut = yield* streamError(settingsFor(fake))
      expect(cut._tag).toBe("UnknownError")
      expect(cut.message).toMatch(/^openai-chat: the answer broke off mid-stream: terminated/)
      const ended = yield* streamError(settingsFor(fake))
      expect(ended.message).toBe("openai-chat: the stream ended before [DONE] and without a finish_reason")
    }))

  it.scopedLive("HTTP 500 and 401 are HttpResponseErrors with the status and the body, never the key", () =>
    Effect.gen(function*() {
      const fake = yield* fakeServer
      const key = "sk-secret-123"
      const settings = settingsFor(fake, { apiKey: Option.some(Redacted.make(key)) })
      fake.script(
        PATH,
        { kind: "json", status: 500, body: { error: { message: "The server had an error", type: "server_error" } } },
        {
          kind: "json",
          status: 401,
          body: { error: { message: `Incorrect API key provided: ${key}.`, code: "invalid_api_key" } }
        }
      )
      const url = `${fake.url}/v1/chat/completions`
      for (
        const [status, text] of [[500, "The server had an error"], [401, "Incorrect API key provided: <redacted>."]]
      ) {
        const error = yield* streamError(settings)
        if (error._tag !== "HttpResponseError") return expect.fail(`expected an HttpResponseError, got ${error._tag}`)
        expect(error.response.status).toBe(status)
        expect(error.message).toBe(`openai-chat: ${status} POST ${url}: ${text}`)
        expect(error.body).toContain(String(text))
        expect(error.message).not.toContain(key)
        expect(JSON.stringify(error)).not.toContain(key)
        expect(String(error)).not.toContain(key)
      }
      // The key did go out, in the header.
      expect(fake.requestsTo(PATH).map((r) => r.headers.authorization)).toEqual([`Bearer ${key}`, `Bearer ${key}`])
    }))

  it.scopedLive("429 exposes the status and the retry-after header", () =>
    Effect.gen(function*() {
      const fake = yield* fakeServer
      fake.script(PATH, {
        kind: "json",
        status: 429,
        headers: { "retry-after": "7" },
        body: { error: { message: "Rate limit reached", type: "requests" } }
      })
      const error = yield* streamError(settingsFor(fake))
      if (error._tag !== "HttpResponseError") return expect.fail(`expected an HttpResponseError, got ${error._tag}`)
      expect(error.response.status).toBe(429)
      expect(error.response.headers["retry-after"]).toBe("7")
      expect(error.message).toMatch(/^openai-chat: 429 POST .*: Rate limit reached$/)
    }))

  it.scopedLive("a refused connection is an HttpRequestError", () =>
    Effect.gen(function*() {
      const closed = yield* Effect.promise(() => FakeLlmServer.start())
      yield* Effect.promise(() => closed.close())
      const error = yield* streamError(settingsFor(closed), false)
      if (error._tag !== "HttpRequestError") return expect.fail(`expected an HttpRequestError, got ${error._tag}`)
      expect(error.reason).toBe("Transport")
      expect(error.message).toMatch(
        new RegExp(`^openai-chat: POST ${closed.url}/v1/chat/completions: .*ECONNREFUSED`)
      )
    }))
})

describe("openai-chat interruption", () => {
  it.scopedLive("a consumer that stops early closes the connection", () =>
    Effect.gen(function*() {
      const fake = yield* fakeServer
      fake.script(PATH, sse([delta({ content: "one" }), delta({ content: "two" })], { hang: true }))
      const parts = yield* LanguageModel.streamText({ prompt: "Hi" }).pipe(
        Stream.take(2),
        Stream.runCollect,
        provide(settingsFor(fake))
      )
      expect(Chunk.toArray(parts).map((p) => p.type)).toEqual(["response-metadata", "text-start"])
      expect(yield* aborted(fake)).toBe(true)
    }))

  it.scopedLive("interrupting the fiber while it waits for the answer closes the connection", () =>
    Effect.gen(function*() {
      const fake = yield* fakeServer
      fake.script(PATH, { kind: "silent" })
      const fiber = yield* LanguageModel.streamText({ prompt: "Hi" }).pipe(
        Stream.runDrain,
        provide(settingsFor(fake)),
        Effect.fork
      )
      while (fake.requestsTo(PATH).length === 0) yield* Effect.sleep("10 millis")
      yield* Fiber.interrupt(fiber)
      expect(yield* aborted(fake)).toBe(true)
    }))
})

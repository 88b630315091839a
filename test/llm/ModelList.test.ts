/**
 * The startup model check against the fake server: the model lists of
 * OpenAI-style servers and of Anthropic (in pages), a model not served,
 * an error status, a refused connection, a server that never answers and
 * a body that is no model list. No reason ever carries the key.
 */
import { FetchHttpClient, type HttpClient } from "@effect/platform"
import { NodeHttpClient } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect, type Layer, Option, Redacted } from "effect"
import { checkModel, listModels, ModelListError } from "../../src/llm/ModelList.ts"
import type { ProviderSettings, RemoteProvider } from "../../src/llm/Settings.ts"
import { FakeLlmServer } from "../utils/FakeLlmServer.ts"
import * as Fake from "../utils/FakeProviders.ts"
import { fakeServer, KEY } from "../utils/ProviderCases.ts"
import { until } from "../utils/until.ts"

const settings = (
  provider: RemoteProvider,
  baseUrl: string,
  overrides: Partial<ProviderSettings> = {}
): ProviderSettings => ({
  provider,
  baseUrl,
  apiKey: Option.some(Redacted.make(KEY)),
  model: provider === "anthropic" ? "claude-sonnet-4-5-20250929" : "gpt-4.1",
  maxOutputTokens: Option.none(),
  temperature: Option.none(),
  requestTimeout: Duration.seconds(5),
  ...overrides
})

const withClient =
  (http: Layer.Layer<HttpClient.HttpClient> = FetchHttpClient.layer) =>
  <A, E>(effect: Effect.Effect<A, E, HttpClient.HttpClient>) => Effect.provide(effect, http)

const reasonOf = (effect: Effect.Effect<unknown, ModelListError, HttpClient.HttpClient>) =>
  effect.pipe(
    Effect.flip,
    withClient(),
    Effect.map((error) => {
      expect(error).toBeInstanceOf(ModelListError)
      expect(error.message).toBe(error.reason)
      expect(error.reason).not.toContain(KEY)
      expect(JSON.stringify(error)).not.toContain(KEY)
      return error.reason
    })
  )

describe("OpenAI-style model lists", () => {
  for (const provider of ["openai-chat", "openai-responses"] as const) {
    it.scopedLive(`${provider}: GET {baseUrl}/models with the bearer key, and the model is served`, () =>
      Effect.gen(function*() {
        const server = yield* fakeServer
        server.always("/v1/models", Fake.openAiModels(["gpt-4o", "gpt-4.1"]))
        const s = settings(provider, `${server.url}/v1`)
        expect(yield* listModels(s).pipe(withClient())).toEqual(["gpt-4o", "gpt-4.1"])
        yield* checkModel(s).pipe(withClient())
        const [request] = server.requestsTo("/v1/models")
        expect(request).toMatchObject({ method: "GET", headers: { authorization: `Bearer ${KEY}` } })
      }))
  }

  it.scopedLive("llama.cpp's own {models:[…]} shape, and no authorization header without a key", () =>
    Effect.gen(function*() {
      const server = yield* fakeServer
      server.always("/models", Fake.llamaCppModels(["qwen2.5-7b-instruct-q4_k_m.gguf"]))
      const s = settings("openai-chat", server.url, { apiKey: Option.none(), model: "qwen2.5-7b-instruct-q4_k_m.gguf" })
      expect(yield* listModels(s).pipe(withClient())).toEqual(["qwen2.5-7b-instruct-q4_k_m.gguf"])
      yield* checkModel(s).pipe(withClient())
      expect(server.requestsTo("/models")[0]!.headers.authorization).toBeUndefined()
    }))

  it.scopedLive("Ollama's `name:latest` serves the model `name`", () =>
    Effect.gen(function*() {
      const server = yield* fakeServer
      server.always("/v1/models", Fake.openAiModels(["llama3.2:latest", "qwen3:8b"]))
      yield* checkModel(settings("openai-chat", `${server.url}/v1`, { model: "llama3.2" })).pipe(withClient())
      const reason = yield* reasonOf(checkModel(settings("openai-chat", `${server.url}/v1`, { model: "qwen3" })))
      expect(reason).toContain("does not serve model \"qwen3\"")
    }))

  it.scopedLive("a model not served: the reason names the provider, the URL and up to ten models served", () =>
    Effect.gen(function*() {
      const server = yield* fakeServer
      const served = Array.from({ length: 12 }, (_, i) => `m${i}`)
      server.always("/v1/models", Fake.openAiModels(served))
      const reason = yield* reasonOf(checkModel(settings("openai-responses", `${server.url}/v1`, { model: "gpt-5" })))
      expect(reason).toBe(
        `openai-responses at ${server.url}/v1/models: the server does not serve model "gpt-5" ` +
          `(it serves: m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, …)`
      )
    }))

  it.scopedLive("a 401: the status and the provider's words, the key redacted even where the server echoes it", () =>
    Effect.gen(function*() {
      const server = yield* fakeServer
      server.always("/v1/models", Fake.openAiError(401, `Incorrect API key provided: ${KEY}.`, "invalid_request_error"))
      const reason = yield* reasonOf(listModels(settings("openai-chat", `${server.url}/v1`)))
      expect(reason).toBe(
        `openai-chat at ${server.url}/v1/models: HTTP 401: Incorrect API key provided: [redacted].`
      )
    }))

  it.scopedLive("a body that is no model list, or no JSON at all", () =>
    Effect.gen(function*() {
      const server = yield* fakeServer
      server.script("/v1/models", { kind: "json", body: { object: "list" } }, {
        kind: "sse",
        events: ["<html>Bad gateway</html>"]
      })
      const s = settings("openai-chat", `${server.url}/v1`)
      expect(yield* reasonOf(listModels(s))).toContain("the answer is not a model list")
      expect(yield* reasonOf(listModels(s))).toBe(`openai-chat at ${server.url}/v1/models: the answer is not JSON`)
    }))
})

describe("Anthropic's model list", () => {
  it.scopedLive("GET {baseUrl}/v1/models with x-api-key and anthropic-version, following has_more with after_id", () =>
    Effect.gen(function*() {
      const server = yield* fakeServer
      server.script("/v1/models", Fake.anthropicModels(["a-1", "a-2"], true), Fake.anthropicModels(["a-3"], false))
      expect(yield* listModels(settings("anthropic", server.url)).pipe(withClient())).toEqual(["a-1", "a-2", "a-3"])
      const requests = server.requestsTo("/v1/models")
      expect(requests.map((r) => new URL(r.url, server.url).searchParams.get("after_id"))).toEqual([null, "a-2"])
      for (const r of requests) {
        expect(r.headers).toMatchObject({ "x-api-key": KEY, "anthropic-version": "2023-06-01" })
        expect(r.headers.authorization).toBeUndefined()
      }
    }))

  it.scopedLive("follows at most five pages", () =>
    Effect.gen(function*() {
      const server = yield* fakeServer
      server.always("/v1/models", Fake.anthropicModels(["same"], true))
      expect(yield* listModels(settings("anthropic", server.url)).pipe(withClient())).toHaveLength(5)
      expect(server.requestsTo("/v1/models")).toHaveLength(5)
    }))

  it.scopedLive("an alias the list does not name is resolved at /v1/models/{alias}; one that is not, fails", () =>
    Effect.gen(function*() {
      const server = yield* fakeServer
      server.always("/v1/models", Fake.anthropicModels(["claude-sonnet-4-5-20250929"]))
      server.script("/v1/models/claude-sonnet-4-5", {
        kind: "json",
        body: { type: "model", id: "claude-sonnet-4-5-20250929", display_name: "Claude Sonnet 4.5" }
      })
      server.script("/v1/models/claude-9", Fake.anthropicError(404, "not_found_error", "model: claude-9"))
      yield* checkModel(settings("anthropic", server.url, { model: "claude-sonnet-4-5" })).pipe(withClient())
      const reason = yield* reasonOf(checkModel(settings("anthropic", server.url, { model: "claude-9" })))
      expect(reason).toBe(
        `anthropic at ${server.url}/v1/models: the server does not serve model "claude-9" ` +
          `(it serves: claude-sonnet-4-5-20250929)`
      )
    }))

  it.scopedLive("a 401 names the status and Anthropic's message", () =>
    Effect.gen(function*() {
      const server = yield* fakeServer
      server.always("/v1/models", Fake.anthropicError(401, "authentication_error", "invalid x-api-key"))
      const reason = yield* reasonOf(listModels(settings("anthropic", server.url)))
      expect(reason).toBe(`anthropic at ${server.url}/v1/models: HTTP 401: invalid x-api-key`)
    }))
})

describe("a server that is not there, or never answers", () => {
  for (const [name, http] of [["fetch", FetchHttpClient.layer], ["undici", NodeHttpClient.layerUndici]] as const) {
    it.live(`a refused connection says so (${name} client)`, () =>
      Effect.gen(function*() {
        const closed = yield* Effect.promise(async () => {
          const server = await FakeLlmServer.start()
          await server.close()
          return server.url
        })
        const error = yield* listModels(settings("openai-chat", `${closed}/v1`)).pipe(Effect.flip, withClient(http))
        expect(error.reason).toBe(`openai-chat at ${closed}/v1/models: the connection was refused`)
      }))
  }

  it.scopedLive("a server that never answers is cut off after the requestTimeout, its request closed", () =>
    Effect.gen(function*() {
      const server = yield* fakeServer
      server.always("/v1/models", { kind: "silent" })
      const started = Date.now()
      const s = settings("anthropic", server.url, { requestTimeout: Duration.millis(200) })
      const reason = yield* reasonOf(checkModel(s))
      expect(reason).toBe(`anthropic at ${server.url}/v1/models: no answer within 200ms`)
      expect(Date.now() - started).toBeLessThan(2_000)
      yield* Effect.promise(() => until(async () => server.requests[0]?.aborted, "the request to be aborted", 3_000))
    }))

  it.scopedLive("credentials in the base URL stay out of the reason", () =>
    Effect.gen(function*() {
      const server = yield* fakeServer
      server.always("/v1/models", Fake.openAiModels([]))
      const withUser = server.url.replace("//", "//admin:hunter2@")
      const reason = yield* reasonOf(checkModel(settings("openai-chat", `${withUser}/v1`)))
      expect(reason).not.toContain("hunter2")
      expect(reason).not.toContain("admin")
      expect(reason.startsWith(`openai-chat at ${server.url}/v1/models: `)).toBe(true)
    }))
})

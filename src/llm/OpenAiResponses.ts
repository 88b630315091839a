/**
 * A LanguageModel over OpenAI's Responses API (`POST {baseUrl}/responses`,
 * streamed), from @effect/ai-openai. The key travels as a bearer token and
 * stays Redacted; each request is cut off after the settings' requestTimeout, and no error
 * it fails with names the key (HttpGuard.ts).
 */
import type { LanguageModel } from "@effect/ai"
import { OpenAiClient, OpenAiLanguageModel } from "@effect/ai-openai"
import type { HttpClient } from "@effect/platform"
import { Effect, Layer, Option, Stream } from "effect"
import { guardClient } from "./HttpGuard.ts"
import type { ProviderSettings } from "./Settings.ts"

export const OpenAiResponsesLayer = (
  settings: ProviderSettings
): Layer.Layer<LanguageModel.LanguageModel, never, HttpClient.HttpClient> =>
  OpenAiLanguageModel.layer({
    model: settings.model,
    config: {
      // Strict mode wants every parameter required; the project's tools have optional ones (a search's
      // limit, the clock's timezone), which OpenAI would refuse with a 400 under it.
      strict: false,
      ...Option.match(settings.maxOutputTokens, { onNone: () => ({}), onSome: (n) => ({ max_output_tokens: n }) }),
      ...Option.match(settings.temperature, { onNone: () => ({}), onSome: (t) => ({ temperature: t }) })
    }
  }).pipe(
    Layer.provide(Layer.scoped(
      OpenAiClient.OpenAiClient,
      Effect.map(
        OpenAiClient.make({
          apiKey: Option.getOrUndefined(settings.apiKey),
          apiUrl: settings.baseUrl,
          transformClient: guardClient(settings.requestTimeout)
        }),
        (client) => ({
          ...client,
          createResponseStream: (options) => Stream.map(client.createResponseStream(options), failedAsError)
        })
      )
    ))
  )

/**
 * @effect/ai-openai reads `response.failed` as a normal finish (reason "stop"), so a failed response would
 * end its run `agent_completed` with whatever had streamed. Read as the `error` event it is, it fails the
 * model request with the provider's words.
 */
const failedAsError = (event: OpenAiClient.ResponseStreamEvent): OpenAiClient.ResponseStreamEvent =>
  event.type !== "response.failed" ? event : ({
    type: "error",
    code: event.response.error?.code ?? "response_failed",
    message: event.response.error?.message ?? "the response failed",
    param: null,
    sequence_number: event.sequence_number
  } as unknown as OpenAiClient.ResponseStreamEvent)

/**
 * A LanguageModel over OpenAI's Responses API (`POST {baseUrl}/responses`,
 * streamed), from @effect/ai-openai. The key travels as a bearer token and
 * stays Redacted; each request is cut off after the settings' requestTimeout, and no error
 * it fails with names the key (HttpGuard.ts).
 */
import type { LanguageModel } from "@effect/ai"
import { OpenAiClient, OpenAiLanguageModel } from "@effect/ai-openai"
import type { HttpClient } from "@effect/platform"
import { Layer, Option } from "effect"
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
    Layer.provide(OpenAiClient.layer({
      apiKey: Option.getOrUndefined(settings.apiKey),
      apiUrl: settings.baseUrl,
      transformClient: guardClient(settings.requestTimeout)
    }))
  )

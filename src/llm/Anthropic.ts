/**
 * A LanguageModel over Anthropic's Messages API (`POST {baseUrl}/v1/messages`,
 * streamed), from @effect/ai-anthropic. The key travels in `x-api-key` and
 * stays Redacted; each request is cut off after the settings' requestTimeout, and no error
 * it fails with names the key (HttpGuard.ts).
 * Thinking blocks arrive as reasoning-start / reasoning-delta / reasoning-end
 * parts (the signature on a reasoning-delta's metadata).
 */
import type { LanguageModel } from "@effect/ai"
import { AnthropicClient, AnthropicLanguageModel } from "@effect/ai-anthropic"
import type { HttpClient } from "@effect/platform"
import { Layer, Option } from "effect"
import { guardClient } from "./HttpGuard.ts"
import type { ProviderSettings } from "./Settings.ts"

/** The Messages API requires max_tokens; this is its value when LLM_MAX_OUTPUT_TOKENS is not set. */
export const DEFAULT_MAX_TOKENS = 4096

export const AnthropicLayer = (
  settings: ProviderSettings
): Layer.Layer<LanguageModel.LanguageModel, never, HttpClient.HttpClient> =>
  AnthropicLanguageModel.layer({
    model: settings.model,
    config: {
      // Thinking counts towards max_tokens, which must exceed its budget.
      max_tokens: Option.getOrElse(
        settings.maxOutputTokens,
        () => DEFAULT_MAX_TOKENS + Option.getOrElse(settings.thinkingTokens ?? Option.none(), () => 0)
      ),
      ...Option.match(settings.temperature, { onNone: () => ({}), onSome: (t) => ({ temperature: t }) }),
      ...Option.match(settings.thinkingTokens ?? Option.none(), {
        onNone: () => ({}),
        onSome: (budget) => ({ thinking: { type: "enabled" as const, budget_tokens: budget } })
      })
    }
  }).pipe(
    Layer.provide(AnthropicClient.layer({
      apiKey: Option.getOrUndefined(settings.apiKey),
      apiUrl: settings.baseUrl,
      transformClient: guardClient(settings.requestTimeout)
    }))
  )

/**
 * What a language-model provider is built from: the part of the
 * configuration (LLM_*) that names the provider, where it is, the model
 * and its sampling settings. The key is Redacted: it never reaches a log or
 * an error message.
 */
import type { Duration, Option, Redacted } from "effect"

export const LLM_PROVIDERS = ["openai-chat", "openai-responses", "anthropic", "builtin"] as const
export type LlmProvider = typeof LLM_PROVIDERS[number]

/** The providers that call a model over HTTP. */
export type RemoteProvider = Exclude<LlmProvider, "builtin">

/** Each remote provider's public endpoint, used when LLM_BASE_URL is not set. */
export const defaultBaseUrl: Record<RemoteProvider, string> = {
  "openai-chat": "https://api.openai.com/v1",
  "openai-responses": "https://api.openai.com/v1",
  // The Messages API client appends /v1/messages itself.
  anthropic: "https://api.anthropic.com"
}

export interface ProviderSettings {
  readonly provider: RemoteProvider
  /** Without a trailing slash, e.g. http://127.0.0.1:11434/v1. Paths such as `/chat/completions` are appended. */
  readonly baseUrl: string
  readonly apiKey: Option.Option<Redacted.Redacted>
  readonly model: string
  readonly maxOutputTokens: Option.Option<number>
  readonly temperature: Option.Option<number>
  /** To the first byte of an answer, and between two chunks of a stream. */
  readonly requestTimeout: Duration.Duration
}

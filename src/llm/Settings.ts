/**
 * What a language-model provider is built from: the part of the
 * configuration (LLM_*) that names the provider, where it is, the model
 * and its sampling settings. The key is Redacted: it never reaches a log or
 * an error message.
 */
import type { Duration, Option, Redacted } from "effect"
import type { LlmProvider } from "../config/AppConfig.ts"

/** The providers that call a model over HTTP. */
export type RemoteProvider = Exclude<LlmProvider, "builtin">

export interface ProviderSettings {
  readonly provider: RemoteProvider
  /** Without a trailing slash, e.g. http://127.0.0.1:11434/v1. Paths such as `/chat/completions` are appended. */
  readonly baseUrl: string
  readonly apiKey: Option.Option<Redacted.Redacted>
  readonly model: string
  readonly maxOutputTokens: Option.Option<number>
  readonly temperature: Option.Option<number>
  /** Anthropic's extended thinking budget; none leaves thinking off. */
  readonly thinkingTokens?: Option.Option<number>
  /** To the first byte of an answer, and between two chunks of a stream. */
  readonly requestTimeout: Duration.Duration
}

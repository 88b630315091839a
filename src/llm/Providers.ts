/**
 * The model of the runs, chosen by LLM_PROVIDER: the built-in agent, or a
 * remote provider (openai-chat, openai-responses, anthropic) over
 * @effect/platform's HttpClient, each as @effect/ai's LanguageModel with
 * its ModelInfo. A remote model is a startup component like the database:
 * unless LLM_STARTUP_CHECK=false, the provider must list LLM_MODEL among
 * its models, retried by the startup Schedule, or the process stops with a
 * StartupError naming the provider, the URL and the model.
 */
import type { LanguageModel } from "@effect/ai"
import { FetchHttpClient, type HttpClient } from "@effect/platform"
import { Duration, Effect, Layer, Option } from "effect"
import { type AppConfigShape, defaultLlmBaseUrl, startupRetrySchedule } from "../config/AppConfig.ts"
import { StartupError } from "../domain/Errors.ts"
import { ModelInfo } from "./ModelInfo.ts"
import { checkModel } from "./ModelList.ts"
import { OpenAiChatLayer } from "./OpenAiChat.ts"
import type { ProviderSettings, RemoteProvider } from "./Settings.ts"

type ProviderLayer = (
  settings: ProviderSettings
) => Layer.Layer<LanguageModel.LanguageModel, never, HttpClient.HttpClient>

/**
 * The @effect/ai provider packages take about a second to load (their generated API schemas): each is
 * loaded only when it is the one configured.
 */
const lazily = (load: () => Promise<ProviderLayer>): ProviderLayer => (settings) =>
  Layer.unwrapEffect(Effect.map(Effect.promise(load), (layer) => layer(settings)))

const layers: Record<RemoteProvider, ProviderLayer> = {
  "openai-chat": OpenAiChatLayer,
  "openai-responses": lazily(() => import("./OpenAiResponses.ts").then((m) => m.OpenAiResponsesLayer)),
  anthropic: lazily(() => import("./Anthropic.ts").then((m) => m.AnthropicLayer))
}

/** A remote provider's settings; None for the built-in agent. */
export const providerSettings = (config: AppConfigShape): Option.Option<ProviderSettings> => {
  const { llm } = config
  if (Option.isNone(llm.provider) || llm.provider.value === "builtin") return Option.none()
  const provider = llm.provider.value
  return Option.some({
    provider,
    baseUrl: Option.getOrElse(llm.baseUrl, () => defaultLlmBaseUrl[provider]),
    apiKey: llm.apiKey,
    // Validation requires it for the remote providers.
    model: Option.getOrElse(llm.model, () => ""),
    maxOutputTokens: llm.maxOutputTokens,
    temperature: llm.temperature,
    thinkingTokens: llm.thinkingTokens,
    requestTimeout: llm.requestTimeout
  })
}

/** Asks the provider whether it serves the model, as often as the startup Schedule allows. */
export const startupCheck = (settings: ProviderSettings, config: AppConfigShape) =>
  checkModel(settings).pipe(
    Effect.tapError((error) =>
      Effect.logWarning("the model is not available yet").pipe(Effect.annotateLogs({ reason: error.reason }))
    ),
    Effect.retry(startupRetrySchedule(config.startupRetry)),
    Effect.mapError((error) =>
      new StartupError({
        component: "model",
        // The list's error names the provider and the URL.
        reason: `LLM_MODEL "${settings.model}": ${error.reason}`
      })
    )
  )

/**
 * The remote model of `settings`. The run loop cuts off a silent stream after requestTimeout; the
 * providers' own HTTP guard waits a second longer, so that a stall ends a run as `timeout`.
 */
export const remoteModel = (
  settings: ProviderSettings,
  config: AppConfigShape
): Layer.Layer<LanguageModel.LanguageModel | ModelInfo, StartupError, HttpClient.HttpClient> => {
  const model = layers[settings.provider]({
    ...settings,
    requestTimeout: Duration.sum(settings.requestTimeout, Duration.seconds(1))
  })
  const info = Layer.succeed(ModelInfo, {
    provider: settings.provider,
    model: settings.model,
    agent: `${settings.provider}/${settings.model}`,
    baseUrl: Option.some(settings.baseUrl)
  })
  const checked = config.llm.startupCheck
    ? Layer.effectDiscard(startupCheck(settings, config)).pipe(Layer.provideMerge(model))
    : model
  return Layer.merge(checked, info)
}

/** The configured remote model over the fetch HttpClient; None for the built-in agent. */
export const configuredRemoteModel = (config: AppConfigShape) =>
  Option.map(
    providerSettings(config),
    (settings) => remoteModel(settings, config).pipe(Layer.provide(FetchHttpClient.layer))
  )

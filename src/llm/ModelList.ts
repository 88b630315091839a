/**
 * The startup check of a remote provider: list the models its server
 * serves and make sure the configured one is among them. OpenAI-style
 * servers (OpenAI, Ollama's /v1, vLLM, llama.cpp) answer `GET {baseUrl}/models`;
 * Anthropic answers `GET {baseUrl}/v1/models` in pages. A failure says which
 * provider, which URL (without credentials) and what happened, and never
 * carries the key.
 */
import { HttpClient, HttpClientRequest } from "@effect/platform"
import type { HttpClientError } from "@effect/platform"
import { Data, Duration, Effect, Option, Redacted } from "effect"
import type { ProviderSettings } from "./Settings.ts"

export class ModelListError extends Data.TaggedError("ModelListError")<{ readonly reason: string }> {
  override get message(): string {
    return this.reason
  }
}

/** Anthropic pages followed at most (of up to 1000 models each). */
const MAX_PAGES = 5
/** Models named in the reason of a missing model. */
const SHOWN = 10
const ANTHROPIC_VERSION = "2023-06-01"

/** `url` without user and password. */
const shown = (url: string): string => {
  try {
    const parsed = new URL(url)
    parsed.username = ""
    parsed.password = ""
    return parsed.toString()
  } catch {
    return url.replace(/\/\/[^/@]*@/, "//")
  }
}

const failure = (settings: ProviderSettings, url: string, what: string): ModelListError => {
  // Credentials in a URL, wherever it appears (an underlying error may quote it), are dropped.
  let reason = `${settings.provider} at ${shown(url)}: ${what.replace(/\/\/[^/\s@]*@/g, "//")}`
  // A server may echo the key in its error text: it never leaves here.
  const key = Option.map(settings.apiKey, Redacted.value).pipe(Option.filter((k) => k.length > 0))
  if (Option.isSome(key)) reason = reason.split(key.value).join("[redacted]")
  return new ModelListError({ reason })
}

/** The provider's own words from an error body: `error.message`, `error` or `message`, else the text itself. */
const errorText = (body: string): string => {
  let said: unknown = undefined
  try {
    const json = JSON.parse(body)
    said = typeof json?.error === "string" ? json.error : json?.error?.message ?? json?.message
  } catch {
    // Not JSON: the text itself.
  }
  const text = (typeof said === "string" ? said : body).trim()
  return text.length > 300 ? `${text.slice(0, 300)}…` : text
}

const codeOf = (cause: unknown, depth = 0): string | undefined => {
  if (typeof cause !== "object" || cause === null || depth > 4) return undefined
  const c = cause as { code?: unknown; cause?: unknown; errors?: unknown }
  if (typeof c.code === "string") return c.code
  if (Array.isArray(c.errors)) {
    for (const e of c.errors) {
      const code = codeOf(e, depth + 1)
      if (code !== undefined) return code
    }
  }
  return codeOf(c.cause, depth + 1)
}

const detail = (error: HttpClientError.HttpClientError): string =>
  error.description ??
    (error.cause instanceof Error && error.cause.message.length > 0 ? error.cause.message : error.reason)

const transportFailure = (error: HttpClientError.HttpClientError): string => {
  if (error._tag === "ResponseError") return `the answer could not be read (${detail(error)})`
  const code = codeOf(error.cause)
  if (code === "ECONNREFUSED") return "the connection was refused"
  if (code !== undefined) return `could not connect (${code})`
  return `the request failed (${detail(error)})`
}

/** One GET, its JSON body, or a failure naming what happened; cut off after the requestTimeout. */
const getJson = (
  settings: ProviderSettings,
  url: string,
  headers: Record<string, string>,
  params: Record<string, string> = {}
): Effect.Effect<{ readonly status: number; readonly body: unknown }, ModelListError, HttpClient.HttpClient> =>
  Effect.gen(function*() {
    const client = yield* HttpClient.HttpClient
    const request = HttpClientRequest.get(url).pipe(
      HttpClientRequest.setHeaders(headers),
      HttpClientRequest.setUrlParams(params),
      HttpClientRequest.acceptJson
    )
    const response = yield* client.execute(request)
    const text = yield* response.text
    if (response.status < 200 || response.status >= 300) {
      const said = errorText(text)
      return { status: response.status, body: said.length > 0 ? said : undefined }
    }
    try {
      return { status: response.status, body: JSON.parse(text) as unknown }
    } catch {
      return yield* failure(settings, url, "the answer is not JSON")
    }
  }).pipe(
    Effect.catchTags({
      RequestError: (error) => failure(settings, url, transportFailure(error)),
      ResponseError: (error) => failure(settings, url, transportFailure(error))
    }),
    Effect.timeoutFail({
      duration: settings.requestTimeout,
      onTimeout: () => failure(settings, url, `no answer within ${Duration.format(settings.requestTimeout)}`)
    })
  )

const statusFailure = (settings: ProviderSettings, url: string, status: number, said: unknown) =>
  failure(settings, url, `HTTP ${status}${typeof said === "string" ? `: ${said}` : ""}`)

const isRecord = (u: unknown): u is Record<string, unknown> => typeof u === "object" && u !== null

/** `{"data":[{"id"}]}` (OpenAI, Ollama, vLLM, llama.cpp) or llama.cpp's `{"models":[{"name"|"model"|"id"}]}`. */
const openAiIds = (body: unknown): ReadonlyArray<string> | undefined => {
  if (!isRecord(body)) return undefined
  const pick = (list: unknown, keys: ReadonlyArray<string>) =>
    Array.isArray(list)
      ? list.flatMap((m) => {
        const key = keys.find((k) => isRecord(m) && typeof m[k] === "string")
        return key === undefined ? [] : [String((m as Record<string, unknown>)[key])]
      })
      : undefined
  return pick(body.data, ["id"]) ?? pick(body.models, ["name", "model", "id"])
}

const openAiStyle = (settings: ProviderSettings) =>
  Effect.gen(function*() {
    const url = `${settings.baseUrl}/models`
    const headers: Record<string, string> = Option.match(settings.apiKey, {
      onNone: () => ({}),
      onSome: (key) => ({ authorization: `Bearer ${Redacted.value(key)}` })
    })
    const { body, status } = yield* getJson(settings, url, headers)
    if (status !== 200) return yield* statusFailure(settings, url, status, body)
    const ids = openAiIds(body)
    if (ids === undefined) {
      return yield* failure(settings, url, "the answer is not a model list (no \"data\" or \"models\" array)")
    }
    return ids
  })

const anthropicHeaders = (settings: ProviderSettings): Record<string, string> => ({
  "anthropic-version": ANTHROPIC_VERSION,
  ...Option.match(settings.apiKey, { onNone: () => ({}), onSome: (key) => ({ "x-api-key": Redacted.value(key) }) })
})

const anthropic = (settings: ProviderSettings) =>
  Effect.gen(function*() {
    const url = `${settings.baseUrl}/v1/models`
    const ids: Array<string> = []
    let after: string | undefined = undefined
    for (let page = 0; page < MAX_PAGES; page++) {
      const params: Record<string, string> = after === undefined
        ? { limit: "1000" }
        : { limit: "1000", after_id: after }
      const { body, status } = yield* getJson(settings, url, anthropicHeaders(settings), params)
      if (status !== 200) return yield* statusFailure(settings, url, status, body)
      if (!isRecord(body) || !Array.isArray(body.data)) {
        return yield* failure(settings, url, "the answer is not a model list (no \"data\" array)")
      }
      for (const m of body.data) if (isRecord(m) && typeof m.id === "string") ids.push(m.id)
      if (body.has_more !== true || typeof body.last_id !== "string") break
      after = body.last_id
    }
    return ids
  })

export const listModels = (
  settings: ProviderSettings
): Effect.Effect<ReadonlyArray<string>, ModelListError, HttpClient.HttpClient> =>
  settings.provider === "anthropic" ? anthropic(settings) : openAiStyle(settings)

/**
 * Anthropic lists dated ids (claude-sonnet-4-5-20250929) and resolves an alias
 * (claude-sonnet-4-5) at `GET /v1/models/{alias}`; a 404 there means it is not served.
 */
const anthropicResolves = (settings: ProviderSettings) =>
  Effect.gen(function*() {
    const url = `${settings.baseUrl}/v1/models/${encodeURIComponent(settings.model)}`
    const { body, status } = yield* getJson(settings, url, anthropicHeaders(settings))
    if (status === 404) return false
    if (status !== 200) return yield* statusFailure(settings, url, status, body)
    return isRecord(body) && typeof body.id === "string"
  })

/** Fails unless the server serves `settings.model` (Ollama's `x` being `x:latest`, an Anthropic alias resolving). */
export const checkModel = (settings: ProviderSettings): Effect.Effect<void, ModelListError, HttpClient.HttpClient> =>
  Effect.gen(function*() {
    const served = yield* listModels(settings)
    const model = settings.model
    if (served.includes(model) || served.includes(`${model}:latest`)) return
    if (settings.provider === "anthropic" && (yield* anthropicResolves(settings))) return
    const list = served.length === 0
      ? "it serves no models"
      : `it serves: ${served.slice(0, SHOWN).join(", ")}${served.length > SHOWN ? ", …" : ""}`
    const url = settings.provider === "anthropic" ? `${settings.baseUrl}/v1/models` : `${settings.baseUrl}/models`
    return yield* failure(settings, url, `the server does not serve model "${model}" (${list})`)
  })

/**
 * A LanguageModel for the OpenAI Chat Completions API ("openai-chat"):
 * OpenAI itself and the servers that speak its dialect (vLLM, Ollama,
 * llama.cpp, DeepSeek, LiteLLM…). Every answer is streamed; a whole answer
 * (generateText) is its stream collected.
 *
 * No retry and no timeout here: the caller applies both, the same for all
 * providers. Interrupting the stream aborts the HTTP request. Every failure
 * is an AiError with a one-line message that never contains the key.
 */
import { LanguageModel } from "@effect/ai"
import type { AiError, Response } from "@effect/ai"
import * as Sse from "@effect/experimental/Sse"
import { HttpClient, HttpClientRequest } from "@effect/platform"
import type { HttpClientError, HttpClientResponse } from "@effect/platform"
import { Chunk, Effect, Layer, Option, Redacted, Stream } from "effect"
import {
  broken,
  causeChain,
  ChatRequestError,
  ChatResponseError,
  clip,
  describeBody,
  PROVIDER
} from "./OpenAiChatErrors.ts"
import { makeBody } from "./OpenAiChatRequest.ts"
import { decodeEvents } from "./OpenAiChatStream.ts"
import type { ProviderSettings } from "./Settings.ts"

const plainHeaders = (headers: HttpClientResponse.HttpClientResponse["headers"]): Record<string, string> =>
  Object.fromEntries(Object.entries(headers).filter(([name]) => name !== "set-cookie"))

export const makeOpenAiChat = (
  settings: ProviderSettings
): Effect.Effect<LanguageModel.Service, never, HttpClient.HttpClient> =>
  Effect.gen(function*() {
    const client = yield* HttpClient.HttpClient
    const url = `${settings.baseUrl}/chat/completions`
    const details: typeof AiError.HttpRequestDetails.Type = {
      method: "POST",
      url,
      urlParams: [],
      hash: Option.none(),
      headers: {
        "content-type": "application/json",
        ...(Option.isSome(settings.apiKey) ? { authorization: "<redacted>" } : {})
      }
    }
    /** A provider that echoes the key in an error body does not get it into a message. */
    const scrub = (text: string): string =>
      Option.match(settings.apiKey, {
        onNone: () => text,
        onSome: (key) => Redacted.value(key) === "" ? text : text.split(Redacted.value(key)).join("<redacted>")
      })

    const requestError = (error: HttpClientError.RequestError) =>
      new ChatRequestError({
        module: PROVIDER,
        method: "streamText",
        reason: error.reason,
        request: details,
        description: scrub(causeChain(error.cause ?? error)),
        ...(error.cause === undefined ? {} : { cause: error.cause })
      })

    const statusError = (response: HttpClientResponse.HttpClientResponse) =>
      response.text.pipe(
        Effect.orElseSucceed(() => ""),
        Effect.flatMap((text) => {
          const body = scrub(text)
          return Effect.fail(
            new ChatResponseError({
              module: PROVIDER,
              method: "streamText",
              reason: "StatusCode",
              request: details,
              response: { status: response.status, headers: plainHeaders(response.headers) },
              body: clip(body, 4000),
              description: describeBody(body)
            })
          )
        })
      )

    const streamText = (options: LanguageModel.ProviderOptions) => {
      const request = HttpClientRequest.post(url).pipe(
        HttpClientRequest.bodyUnsafeJson(makeBody(settings, options)),
        HttpClientRequest.setHeader("accept", "text/event-stream"),
        (request) =>
          Option.match(settings.apiKey, {
            onNone: () => request,
            onSome: (key) => HttpClientRequest.setHeader(request, "authorization", `Bearer ${Redacted.value(key)}`)
          })
      )
      const cut = (error: HttpClientError.ResponseError) =>
        broken(`the answer broke off mid-stream: ${scrub(causeChain(error.cause ?? error))}`, error.cause)
      const events = client.execute(request).pipe(
        Effect.mapError((error) => error._tag === "RequestError" ? requestError(error) : cut(error)),
        Effect.flatMap((response) =>
          response.status >= 200 && response.status < 300 ? Effect.succeed(response) : statusError(response)
        ),
        Effect.map((response) => Stream.mapError(response.stream, cut)),
        Stream.unwrap,
        Stream.decodeText(),
        Stream.pipeThroughChannel(Sse.makeChannel())
      )
      // One part per chunk: @effect/ai decodes a chunk at once, and a call to a tool the model was not
      // given must fail alone, after its announcement has been seen (see ModelCall).
      return decodeEvents(events).pipe(Stream.rechunk(1))
    }

    return yield* LanguageModel.make({
      streamText,
      generateText: (options) =>
        Effect.map(Stream.runCollect(streamText(options)), (parts) => collect(Chunk.toReadonlyArray(parts)))
    })
  })

/** The whole parts of a streamed answer: text and reasoning joined, tool calls as they are. */
export const collect = (parts: ReadonlyArray<Response.StreamPartEncoded>): Array<Response.PartEncoded> => {
  const out: Array<Response.PartEncoded> = []
  const open = new Map<string, { type: "text" | "reasoning"; text: string }>()
  for (const part of parts) {
    switch (part.type) {
      case "text-start":
      case "reasoning-start": {
        const whole = { type: part.type === "text-start" ? "text" as const : "reasoning" as const, text: "" }
        open.set(`${whole.type}:${part.id}`, whole)
        out.push(whole)
        break
      }
      case "text-delta":
      case "reasoning-delta": {
        const whole = open.get(`${part.type === "text-delta" ? "text" : "reasoning"}:${part.id}`)
        if (whole !== undefined) whole.text += part.delta
        break
      }
      case "tool-call":
      case "response-metadata":
      case "finish":
        out.push(part)
        break
    }
  }
  return out
}

export const OpenAiChatLayer = (
  settings: ProviderSettings
): Layer.Layer<LanguageModel.LanguageModel, never, HttpClient.HttpClient> =>
  Layer.effect(LanguageModel.LanguageModel, makeOpenAiChat(settings))

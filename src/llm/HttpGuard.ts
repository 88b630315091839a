/**
 * What the providers' HttpClient is wrapped in (their `transformClient`):
 *
 * - the settings' requestTimeout: an answer must begin (status and headers)
 *   within it, and its body may not go quiet for longer than it, between two
 *   chunks of a stream or while a whole body is read. A request cut off this
 *   way is aborted, so its connection is closed.
 * - no credentials in errors: @effect/ai copies the request's headers into
 *   its AiError as they are (`Authorization: Bearer …`, `x-api-key: …`), so
 *   any error leaving this client carries the request with those headers
 *   replaced by "<redacted>". The request sent keeps them.
 */
import { Headers, HttpClient, HttpClientError, HttpClientRequest, HttpIncomingMessage } from "@effect/platform"
import { HttpClientResponse } from "@effect/platform"
import { Duration, Effect, Inspectable, Stream } from "effect"

const CREDENTIALS = ["authorization", "proxy-authorization", "x-api-key", "api-key", "cookie"]

/** `request` with its credential headers replaced by "<redacted>". */
export const redactRequest = (request: HttpClientRequest.HttpClientRequest): HttpClientRequest.HttpClientRequest => {
  const present = CREDENTIALS.filter((name) => Headers.has(request.headers, name))
  return present.length === 0
    ? request
    : HttpClientRequest.setHeaders(request, Object.fromEntries(present.map((name) => [name, "<redacted>"])))
}

const scrub = (
  error: HttpClientError.HttpClientError,
  response?: HttpClientResponse.HttpClientResponse
): HttpClientError.HttpClientError => {
  const request = redactRequest(error.request)
  const fields = {
    request,
    cause: error.cause,
    ...(error.description === undefined ? {} : { description: error.description })
  }
  return error._tag === "RequestError"
    ? new HttpClientError.RequestError({ ...fields, reason: error.reason })
    : new HttpClientError.ResponseError({ ...fields, reason: error.reason, response: response ?? error.response })
}

/** Wraps `client` as the module comment says. */
export const guardClient =
  (timeout: Duration.DurationInput) => (client: HttpClient.HttpClient): HttpClient.HttpClient => {
    const duration = Duration.decode(timeout)
    return HttpClient.transform(client, (effect, request) =>
      effect.pipe(
        Effect.timeoutFail({
          duration,
          onTimeout: () =>
            new HttpClientError.RequestError({
              request,
              reason: "Transport",
              description: `no answer within ${Duration.format(duration)}`
            })
        }),
        Effect.mapError((error) => scrub(error)),
        Effect.map((response) => new Guarded(response, duration))
      ))
  }

/** A response that names a redacted request, and whose body reads fail once no byte came for `duration`. */
class Guarded extends Inspectable.Class implements HttpClientResponse.HttpClientResponse {
  readonly [HttpClientResponse.TypeId]: HttpClientResponse.TypeId = HttpClientResponse.TypeId
  readonly [HttpIncomingMessage.TypeId]: HttpIncomingMessage.TypeId = HttpIncomingMessage.TypeId
  readonly request: HttpClientRequest.HttpClientRequest

  constructor(readonly original: HttpClientResponse.HttpClientResponse, readonly duration: Duration.Duration) {
    super()
    this.request = redactRequest(original.request)
  }

  private stalled(): HttpClientError.ResponseError {
    return new HttpClientError.ResponseError({
      request: this.request,
      // Its own body reads are bounded: an error report reading the rest of a stalled body cannot hang.
      response: this,
      reason: "Decode",
      description: `the answer stalled: nothing came for ${Duration.format(this.duration)}`
    })
  }

  private bounded<A>(
    body: Effect.Effect<A, HttpClientError.ResponseError>
  ): Effect.Effect<A, HttpClientError.ResponseError> {
    return body.pipe(
      Effect.mapError((error) => scrub(error, this) as HttpClientError.ResponseError),
      Effect.timeoutFail({ duration: this.duration, onTimeout: () => this.stalled() })
    )
  }

  get status() {
    return this.original.status
  }
  get headers() {
    return this.original.headers
  }
  get cookies() {
    return this.original.cookies
  }
  get remoteAddress() {
    return this.original.remoteAddress
  }
  get formData() {
    return this.bounded(this.original.formData)
  }
  get text() {
    return this.bounded(this.original.text)
  }
  get json() {
    return this.bounded(this.original.json)
  }
  get urlParamsBody() {
    return this.bounded(this.original.urlParamsBody)
  }
  get arrayBuffer() {
    return this.bounded(this.original.arrayBuffer)
  }
  get stream(): Stream.Stream<Uint8Array, HttpClientError.ResponseError> {
    return this.original.stream.pipe(
      Stream.mapError((error) => scrub(error, this) as HttpClientError.ResponseError),
      Stream.timeoutFail(() => this.stalled(), this.duration)
    )
  }

  toJSON() {
    return { ...(this.original.toJSON() as object), request: this.request.toJSON() }
  }
}

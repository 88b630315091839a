/**
 * One model request as a run makes it, whatever the provider: cut off when
 * nothing arrives for LLM_REQUEST_TIMEOUT_MS (to the first piece, and
 * between two), retried on a rate limit (429) after its Retry-After while
 * nothing has streamed yet, counted in the metrics, recorded in the model's
 * health, and failed with a message an operator can act on, naming the
 * provider and the status and never the key. An error the provider reports
 * inside a stream, or an answer that ends without its finish, fails the
 * request the same way.
 */
import { AiError, LanguageModel, type Prompt, type Response, type Toolkit } from "@effect/ai"
import { Clock, Context, Data, Duration, Effect, Metric, Option, Redacted, Schedule, Stream, Tracer } from "effect"
import { AppConfig } from "../config/AppConfig.ts"
import * as Metrics from "../metrics/Metrics.ts"
import { ModelInfo } from "./ModelInfo.ts"
import { ModelStatus } from "./ModelStatus.ts"

export class ModelFailure extends Data.TaggedError("ModelFailure")<{
  readonly kind: "failed" | "timeout"
  readonly message: string
}> {}

/**
 * What a provider said went wrong inside a stream that began well (a 200): the Responses API's `error`
 * event, the Messages API's `event: error` (overloaded_error…), which @effect/ai hands on as an `error`
 * part; or an answer that ended without its finish. Failures of the request like an error status.
 */
export class StreamFailure extends Data.TaggedError("StreamFailure")<{
  /** The provider's error object; none when the stream only ended early. */
  readonly error?: unknown
}> {}

export interface ModelTurn {
  readonly prompt: Prompt.Prompt
  readonly toolkit: Toolkit.WithHandler<any>
}

const MAX_DETAIL = 300

const parseArgs = (args: string): unknown => {
  try {
    return args.trim().length === 0 ? {} : JSON.parse(args)
  } catch {
    return { arguments: args }
  }
}

/** The provider's own words from an error body: OpenAI's and Anthropic's `error.message`, or the text. */
const detailOf = (body: string | undefined): string | undefined => {
  if (body === undefined || body.length === 0) return undefined
  let text = body
  try {
    const parsed = JSON.parse(body)
    const message = parsed?.error?.message ?? parsed?.message ?? parsed?.error
    if (typeof message === "string") text = message
  } catch {
    // Not JSON: the text as it is.
  }
  text = text.replace(/\s+/g, " ").trim()
  return text.length > MAX_DETAIL ? `${text.slice(0, MAX_DETAIL)}…` : text
}

/** The words of an error object in a stream: its message, with its code (or type) when it has one. */
const reportedOf = (error: unknown): string | undefined => {
  if (typeof error === "string") return detailOf(error)
  if (typeof error !== "object" || error === null) return undefined
  const { code, message, type } = error as Record<string, unknown>
  const kind = typeof code === "string" ? code : typeof type === "string" && type !== "error" ? type : undefined
  const text = typeof message === "string" ? detailOf(message) : detailOf(JSON.stringify(error))
  return kind === undefined || text === undefined ? text : `${text} (${kind})`
}

/** A URL without credentials or query, which may hold a key. */
const safeUrl = (url: string) => {
  try {
    const parsed = new URL(url)
    return `${parsed.protocol}//${parsed.host}${parsed.pathname}`
  } catch {
    return "the provider"
  }
}

const statusOf = (error: unknown): number | undefined =>
  error instanceof AiError.HttpResponseError ? error.response.status : undefined

/** The wait a 429 asks for: Retry-After in seconds or as a date; none when absent. */
const retryAfter = (error: unknown, now: number): Option.Option<Duration.Duration> => {
  if (!(error instanceof AiError.HttpResponseError)) return Option.none()
  const header = (error.response.headers as Record<string, unknown>)["retry-after"]
  if (typeof header !== "string") return Option.none()
  const seconds = Number(header)
  if (Number.isFinite(seconds) && seconds >= 0) return Option.some(Duration.seconds(seconds))
  const date = Date.parse(header)
  return Number.isNaN(date) ? Option.none() : Option.some(Duration.millis(Math.max(0, date - now)))
}

/** What went wrong, for the run's `agent_error` and the logs. */
const describeFailure = (provider: string, error: unknown): string => {
  if (error instanceof AiError.HttpResponseError) {
    const detail = detailOf(error.body) ?? error.description
    return `${provider} answered ${error.response.status} to ${error.request.method} ${safeUrl(error.request.url)}${
      detail === undefined ? "" : `: ${detail}`
    }`
  }
  if (error instanceof AiError.HttpRequestError) {
    return `${provider} could not be reached at ${safeUrl(error.request.url)}${
      error.description === undefined ? "" : `: ${error.description}`
    }`
  }
  if (error instanceof AiError.MalformedOutput) {
    return `${provider} sent an answer that could not be read${
      error.description === undefined ? "" : `: ${error.description}`
    }`
  }
  if (error instanceof AiError.MalformedInput) {
    return `${provider} could not be sent the request${error.description === undefined ? "" : `: ${error.description}`}`
  }
  if (error instanceof StreamFailure) {
    if (error.error === undefined) return `${provider} ended its answer without finishing it`
    const said = reportedOf(error.error)
    return `${provider} reported an error in its answer${said === undefined ? "" : `: ${said}`}`
  }
  if (error instanceof AiError.UnknownError) return error.description ?? `${provider} failed`
  return `${provider} failed`
}

/** The rate-limit retry: while nothing has streamed, a 429 waits its Retry-After (1 s without one), bounded. */
const rateLimitSchedule = (
  policy: { readonly attempts: number; readonly maxDelay: Duration.Duration },
  retryable: () => boolean
) =>
  Schedule.identity<unknown>().pipe(
    Schedule.whileInput((error: unknown) =>
      retryable() && statusOf(error) === 429 &&
      Option.match(retryAfter(error, Date.now()), {
        onNone: () => true,
        onSome: (wait) => Duration.lessThanOrEqualTo(wait, policy.maxDelay)
      })
    ),
    Schedule.addDelay((error) => Option.getOrElse(retryAfter(error, Date.now()), () => Duration.seconds(1))),
    Schedule.intersect(Schedule.recurs(policy.attempts))
  )

/**
 * Reads the stream at once, whatever its consumer is doing, into a buffer the consumer takes in chunks
 * (every part that came since its last pull: a consumer that stores parts in groups gets them grouped),
 * and fails it once it has sent nothing for `idle`, before its first part or between two. One timer per
 * quiet spell: `Stream.timeoutFail` arms one per part, and `Stream.interruptWhen` races every pull (about
 * 24 and 40 µs a part, measured; at 50,000 parts a second, a whole core). A part costs about 3 µs here.
 *
 * The model's stream runs in a fiber of its own with no service but the current span (it needs none: its
 * type says so). @effect/ai's `streamText` provides a service to its stream, which merges it into the
 * whole context of the fiber that runs it at every step: in the server, a copy of a map of every service
 * of the layer graph for each part, the most garbage of a streaming run (measured with the allocation
 * profile of the bench's agent workload).
 */
const readEagerly =
  <E2>(idle: Duration.Duration, onQuiet: () => E2) => <A, E>(stream: Stream.Stream<A, E>): Stream.Stream<A, E | E2> =>
    Stream.unwrap(
      Effect.map(
        Effect.zip(Effect.clock, Effect.context<never>()),
        ([clock, context]) =>
          Stream.asyncPush<A, E | E2>((emit) => {
            const idleMs = Duration.toMillis(idle)
            let last = clock.unsafeCurrentTimeMillis()
            let done = false
            const watch: Effect.Effect<void> = Effect.suspend(() => {
              if (done) {
                return Effect.void
              }
              const left = last + idleMs - clock.unsafeCurrentTimeMillis()
              if (left > 0) return Effect.zipRight(Effect.sleep(Duration.millis(left)), watch)
              done = true
              return Effect.sync(() => emit.fail(onQuiet()))
            })
            return Effect.zipRight(
              Effect.forkScoped(watch),
              stream.pipe(
                Stream.runForEach((a) =>
                  Effect.sync(() => {
                    last = clock.unsafeCurrentTimeMillis()
                    emit.single(a)
                  })
                ),
                Effect.matchCause({
                  onSuccess: () => {
                    done = true
                    emit.end()
                  },
                  onFailure: (cause) => {
                    done = true
                    emit.halt(cause)
                  }
                }),
                // In place of the fiber's context, not merged into it (as Effect.provide would).
                Effect.mapInputContext<never, never>(() =>
                  Context.pick(Tracer.ParentSpan)(context as Context.Context<Tracer.ParentSpan>) as Context.Context<
                    never
                  >
                ),
                Effect.forkScoped
              )
            )
          }, { bufferSize: "unbounded" })
      )
    )

export const makeModelCall = Effect.gen(function*() {
  const model = yield* LanguageModel.LanguageModel
  const info = yield* ModelInfo
  const status = yield* ModelStatus
  const { llm } = yield* AppConfig
  const key = Option.map(llm.apiKey, Redacted.value).pipe(Option.filter((k) => k.length >= 4))
  // However a provider words its errors, the key never leaves in one.
  const scrub = (text: string) => Option.match(key, { onNone: () => text, onSome: (k) => text.split(k).join("[key]") })
  const count = (outcome: string) =>
    Metric.increment(Metric.tagged(Metric.tagged(Metrics.llmRequests, "provider", info.provider), "outcome", outcome))
  const timeoutText = `${info.provider} sent nothing for ${Duration.format(llm.requestTimeout)}`

  /**
   * One request. An `error` part fails it, and so does an answer that ends with neither a finish nor a
   * tool call: whatever the provider, the turn's stream then ends as a failed request, counted, logged
   * and recorded in the model's health like an error status.
   */
  const attempt = (turn: ModelTurn, onFirst: () => void) =>
    Stream.unwrap(Effect.map(Clock.currentTimeMillis, (started) => {
      let first = true
      let ended = false
      const parts = model.streamText({
        prompt: turn.prompt,
        toolkit: turn.toolkit,
        disableToolCallResolution: true
      }) as Stream.Stream<Response.StreamPart<any>, AiError.AiError>
      return parts.pipe(
        Stream.mapEffect((part) => {
          if (part.type === "error") return Effect.fail(new StreamFailure({ error: part.error }))
          if (part.type === "finish" || part.type === "tool-call") ended = true
          return Effect.succeed(part)
        }),
        Stream.concat(Stream.suspend(() => ended ? Stream.empty : Stream.fail(new StreamFailure({})))),
        Stream.tap((part) => {
          const effects: Array<Effect.Effect<void>> = []
          if (first) {
            first = false
            onFirst()
            effects.push(Effect.flatMap(
              Clock.currentTimeMillis,
              (now) => Metric.update(Metrics.llmTimeToFirstToken, (now - started) / 1000)
            ))
          }
          if (part.type === "finish") {
            const { inputTokens, outputTokens } = part.usage
            if (inputTokens !== undefined) {
              effects.push(Metric.incrementBy(Metric.tagged(Metrics.llmTokens, "direction", "input"), inputTokens))
            }
            if (outputTokens !== undefined) {
              effects.push(Metric.incrementBy(Metric.tagged(Metrics.llmTokens, "direction", "output"), outputTokens))
            }
          }
          return Effect.all(effects, { discard: true })
        }),
        // From here on a chunk holds every part that came while its consumer was busy (nothing below re-chunks:
        // a `Stream.tap` or `Stream.mapEffect` would hand them on one by one).
        readEagerly(llm.requestTimeout, () => new ModelFailure({ kind: "timeout", message: timeoutText })),
        Stream.tapError((error) =>
          count(error instanceof ModelFailure ? "timeout" : statusOf(error) === 429 ? "rate_limited" : "failed")
        ),
        Stream.onEnd(Effect.zipRight(
          count("ok"),
          Effect.flatMap(
            Clock.currentTimeMillis,
            (now) => Metric.update(Metrics.llmRequestDuration, (now - started) / 1000)
          )
        ))
      )
    }))

  /**
   * @effect/ai decodes each tool call against the toolkit, so a call to a tool the model was not given
   * fails the stream as malformed. The call was announced (`tool-params-start`) before it failed: it is
   * then handed on as a call, which the dispatcher frames and refuses like any unknown tool, and the
   * model is told. The stream ends there.
   */
  const unannounced = (turn: ModelTurn) => {
    const pending = new Map<string, { name: string; args: string }>()
    const track = (part: Response.StreamPart<any>) => {
      if (part.type === "tool-params-start") pending.set(part.id, { name: part.name, args: "" })
      else if (part.type === "tool-params-delta") {
        const call = pending.get(part.id)
        if (call !== undefined) call.args += part.delta
      } else if (part.type === "tool-call") pending.delete(part.id)
    }
    const recover = (error: unknown): Option.Option<Array<Response.StreamPart<any>>> => {
      if (!(error instanceof AiError.MalformedOutput) || pending.size === 0) return Option.none()
      const calls = [...pending].filter(([, call]) => !(call.name in turn.toolkit.tools))
      if (calls.length === 0) return Option.none()
      return Option.some(calls.map(([id, call]) =>
        ({
          type: "tool-call",
          id,
          name: call.name,
          params: parseArgs(call.args),
          providerExecuted: false
        }) as unknown as Response.StreamPart<any>
      ))
    }
    return { track, recover }
  }

  /** One model turn: its parts as they stream, or a failure that says why. */
  const stream = (turn: ModelTurn): Stream.Stream<Response.StreamPart<any>, ModelFailure> =>
    Stream.suspend(() => {
      let streamed = false
      let settled = false
      const unknown = unannounced(turn)
      return attempt(turn, () => streamed = true).pipe(
        Stream.retry(rateLimitSchedule(llm.rateLimitRetry, () => !streamed)),
        Stream.map((part) => {
          unknown.track(part)
          return part
        }),
        Stream.catchAll((error) =>
          Option.match(unknown.recover(error), {
            onNone: () => Stream.fail(error),
            onSome: (calls) => Stream.fromIterable(calls)
          })
        ),
        Stream.mapError((error) =>
          error instanceof ModelFailure
            ? error
            : new ModelFailure({ kind: "failed", message: scrub(describeFailure(info.provider, error)) })
        ),
        Stream.tapError((error) =>
          Effect.zipRight(
            Effect.sync(() => settled = true),
            Effect.zipRight(
              status.failed(error.message),
              Effect.logWarning("the model request failed").pipe(Effect.annotateLogs({ reason: error.message }))
            )
          )
        ),
        Stream.onEnd(Effect.zipRight(Effect.sync(() => settled = true), status.succeeded)),
        Stream.ensuring(Effect.suspend(() => settled ? Effect.void : count("cancelled")))
      )
    })

  return { stream } as const
})

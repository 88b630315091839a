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
import { Context, Data, Duration, Effect, Exit, Metric, Option, Redacted, Schedule, Stream, Tracer } from "effect"
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

type Part = Response.StreamPart<any>

type AttemptError = Consumer | AiError.AiError | ModelFailure | StreamFailure

/** A failure of the caller's `onParts`, carried through the model call's own error handling untouched. */
class Consumer {
  constructor(readonly error: unknown) {}
}

/**
 * The model's stream read at once, whatever the caller is doing, into a buffer the caller takes as groups
 * (every part that came since it last took: a caller that stores parts in groups gets them grouped), and
 * failed once it has sent nothing for `idle`, before its first part or between two.
 *
 * No Effect structure per part beyond the provider's own stream: a part is a plain callback here, one
 * timer serves a quiet spell (`Stream.timeoutFail` arms one per part), and the caller is woken once per
 * group, not once per part through a chain of stream operators (each of which costs every delta of
 * every run: measured, the chain of stream operators after the provider cost more than the provider).
 *
 * The model's stream runs in a fiber of its own with no service but the current span (it needs none: its
 * type says so). @effect/ai's `streamText` provides a service to its stream, which merges it into the
 * whole context of the fiber that runs it at every step: in the server, a copy of a map of every service
 * of the layer graph for each part, the most garbage of a streaming run (measured with the allocation
 * profile of the bench's agent workload).
 */
const readEagerly = <E0, E1, E2, E3>(
  stream: Stream.Stream<Part, E0>,
  options: {
    readonly idle: Duration.Duration
    readonly onQuiet: () => E2
    /** Each part as it arrives: a failure to hand on in its place, or undefined. */
    readonly onPart: (part: Part) => E1 | undefined
    /** After the last part: a failure to end with, or undefined. */
    readonly onEnd: () => E1 | undefined
    readonly onGroup: (parts: ReadonlyArray<Part>) => Effect.Effect<void, E3>
  }
): Effect.Effect<void, E0 | E1 | E2 | E3> => {
  type E = E0 | E1
  return Effect.scoped(Effect.gen(function*() {
    const clock = yield* Effect.clock
    const context = yield* Effect.context<never>()
    const idleMs = Duration.toMillis(options.idle)
    let buffer: Array<Part> = []
    let end: Exit.Exit<void, E | E2> | undefined
    let waiting: (() => void) | undefined
    let last = clock.unsafeCurrentTimeMillis()
    /** Wakes the caller waiting for parts, once there are some or the stream has ended. */
    const wakeUp = () => {
      const w = waiting
      if (w === undefined || (buffer.length === 0 && end === undefined)) return
      waiting = undefined
      w()
    }
    const finish = (exit: Exit.Exit<void, E | E2>) => {
      if (end !== undefined) return
      end = exit
      wakeUp()
    }
    const watch: Effect.Effect<void> = Effect.suspend(() => {
      if (end !== undefined) return Effect.void
      const left = last + idleMs - clock.unsafeCurrentTimeMillis()
      if (left > 0) return Effect.zipRight(Effect.sleep(Duration.millis(left)), watch)
      return Effect.sync(() => finish(Exit.fail(options.onQuiet())))
    })
    yield* Effect.forkScoped(watch)
    yield* stream.pipe(
      Stream.runForEachChunk((chunk): Effect.Effect<void, E> => {
        if (end !== undefined) return Effect.interrupt
        last = clock.unsafeCurrentTimeMillis()
        for (const part of chunk) {
          const failure = options.onPart(part)
          if (failure !== undefined) return Effect.fail(failure)
          buffer.push(part)
        }
        wakeUp()
        return Effect.void
      }),
      Effect.flatMap((): Effect.Effect<void, E> => {
        const failure = options.onEnd()
        return failure === undefined ? Effect.void : Effect.fail(failure)
      }),
      Effect.onExit((exit) => Effect.sync(() => finish(exit))),
      // In place of the fiber's context, not merged into it (as Effect.provide would).
      Effect.mapInputContext<never, never>(() =>
        Context.pick(Tracer.ParentSpan)(context as Context.Context<Tracer.ParentSpan>) as Context.Context<never>
      ),
      Effect.forkScoped
    )
    /** The parts that came since the last group; undefined once the stream has ended, failed with it. */
    const take = Effect.async<ReadonlyArray<Part> | undefined, E | E2>((resume) => {
      const answer = () => {
        if (buffer.length > 0) {
          const parts = buffer
          buffer = []
          resume(Effect.succeed(parts))
        } else {
          resume(Exit.isSuccess(end!) ? Effect.succeed(undefined) : end as Exit.Exit<never, E | E2>)
        }
      }
      if (buffer.length > 0 || end !== undefined) return answer()
      waiting = answer
      return Effect.sync(() => {
        waiting = undefined
      })
    })
    const loop: Effect.Effect<void, E | E2 | E3> = Effect.flatMap(
      take,
      (parts) => parts === undefined ? Effect.void : Effect.zipRight(options.onGroup(parts), loop)
    )
    yield* loop
  }))
}

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
   * One request, its parts handed to `onGroup` in groups. An `error` part fails it, and so does an answer
   * that ends with neither a finish nor a tool call: whatever the provider, the turn then ends as a
   * failed request, counted, logged and recorded in the model's health like an error status. A failure
   * of `onGroup` comes out as a `Consumer`, counted as a cancelled request.
   */
  const attempt = (
    turn: ModelTurn,
    onFirst: () => void,
    onPart: (part: Part) => void,
    onGroup: (parts: ReadonlyArray<Part>) => Effect.Effect<void, Consumer>
  ) =>
    Effect.flatMap(Effect.clock, (clock) => {
      const started = clock.unsafeCurrentTimeMillis()
      let firstAt: number | undefined
      let reported = false
      let ended = false
      let usage: { readonly inputTokens?: number | undefined; readonly outputTokens?: number | undefined } = {}
      const parts = model.streamText({
        prompt: turn.prompt,
        toolkit: turn.toolkit,
        disableToolCallResolution: true
      }) as Stream.Stream<Part, AiError.AiError>
      const tokens = () => {
        const effects: Array<Effect.Effect<void>> = []
        if (usage.inputTokens !== undefined) {
          effects.push(Metric.incrementBy(Metric.tagged(Metrics.llmTokens, "direction", "input"), usage.inputTokens))
        }
        if (usage.outputTokens !== undefined) {
          effects.push(Metric.incrementBy(Metric.tagged(Metrics.llmTokens, "direction", "output"), usage.outputTokens))
        }
        return Effect.all(effects, { discard: true })
      }
      return readEagerly(parts, {
        idle: llm.requestTimeout,
        onQuiet: () => new ModelFailure({ kind: "timeout", message: timeoutText }),
        onPart: (part) => {
          if (part.type === "error") return new StreamFailure({ error: part.error })
          if (part.type === "finish" || part.type === "tool-call") ended = true
          if (part.type === "finish") usage = part.usage
          if (firstAt === undefined) {
            firstAt = clock.unsafeCurrentTimeMillis()
            onFirst()
          }
          onPart(part)
          return undefined
        },
        onEnd: () => ended ? undefined : new StreamFailure({}),
        onGroup: (group) => {
          if (reported || firstAt === undefined) return onGroup(group)
          reported = true
          return Effect.zipRight(Metric.update(Metrics.llmTimeToFirstToken, (firstAt - started) / 1000), onGroup(group))
        }
      }).pipe(
        Effect.tapError((error) =>
          error instanceof Consumer
            ? Effect.void
            : count(error instanceof ModelFailure ? "timeout" : statusOf(error) === 429 ? "rate_limited" : "failed")
        ),
        Effect.tap(() =>
          Effect.all([
            tokens(),
            count("ok"),
            Metric.update(Metrics.llmRequestDuration, (clock.unsafeCurrentTimeMillis() - started) / 1000)
          ], { discard: true })
        )
      )
    })

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

  /**
   * One model turn: its parts handed to `onParts` as they stream, in groups (all that came while the last
   * group was handled), then the turn's end, or a failure that says why (after the parts before it). A
   * failure of `onParts` ends the turn with it, as a cancelled request.
   */
  const turn = <E>(
    modelTurn: ModelTurn,
    onParts: (parts: ReadonlyArray<Part>) => Effect.Effect<void, E>
  ): Effect.Effect<void, ModelFailure | E> =>
    Effect.suspend(() => {
      let streamed = false
      let settled = false
      const unknown = unannounced(modelTurn)
      const onGroup = (parts: ReadonlyArray<Part>) => Effect.mapError(onParts(parts), (error) => new Consumer(error))
      return attempt(modelTurn, () => streamed = true, unknown.track, onGroup).pipe(
        Effect.retry(rateLimitSchedule(llm.rateLimitRetry, () => !streamed)),
        Effect.catchAll((error: AttemptError): Effect.Effect<void, AttemptError> =>
          error instanceof Consumer ? Effect.fail(error) : Option.match(unknown.recover(error), {
            onNone: () => Effect.fail(error),
            onSome: (calls) => onGroup(calls)
          })
        ),
        Effect.mapError((error): Consumer | ModelFailure =>
          error instanceof Consumer || error instanceof ModelFailure
            ? error
            : new ModelFailure({ kind: "failed", message: scrub(describeFailure(info.provider, error)) })
        ),
        Effect.tapError((error) =>
          error instanceof Consumer ? Effect.void : Effect.zipRight(
            Effect.sync(() => settled = true),
            Effect.zipRight(
              status.failed(error.message),
              Effect.logWarning("the model request failed").pipe(Effect.annotateLogs({ reason: error.message }))
            )
          )
        ),
        Effect.zipLeft(Effect.zipRight(Effect.sync(() => settled = true), status.succeeded)),
        Effect.ensuring(Effect.suspend(() => settled ? Effect.void : count("cancelled"))),
        Effect.mapError((error) => error instanceof Consumer ? error.error as E : error)
      )
    })

  return { turn } as const
})

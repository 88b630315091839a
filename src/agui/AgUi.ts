/**
 * AG-UI 1.0 over HTTP (docs/PROTOCOL.md section 5, AG-UI): `POST /agui`
 * takes a `RunAgentInput`, posts its last user message to the thread as
 * `send_message` does, and answers with the run's AG-UI events as SSE;
 * `GET /agui/{thread_id}/runs/{run_id}/events` streams a run again, from its
 * start or, with `Last-Event-ID`, from exactly where a client stopped;
 * `POST /agui/{thread_id}/runs/{run_id}/stop` cancels it. The events are
 * derived from the stored ones (Mapping.ts), so a stream resumed on any
 * node, at any time, is the one the client would have had.
 */
import { RunAgentInputSchema } from "@ag-ui/core/schemas"
import { EventEncoder } from "@ag-ui/encoder"
import { HttpRouter, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { Duration, Effect, Option, Schedule, Schema, Stream } from "effect"
import type { Principal } from "../auth/Auth.ts"
import { authenticated } from "../auth/Bearer.ts"
import { AppConfig } from "../config/AppConfig.ts"
import type { RequestError } from "../domain/Errors.ts"
import { EventLog } from "../eventlog/EventLog.ts"
import { Identifier, Text } from "../protocol/ClientFrames.ts"
import { Supervisor } from "../runs/Supervisor.ts"
import { Access } from "../threads/Access.ts"
import { eventId, initialState, isAfter, parsePosition, type Position, step } from "./Mapping.ts"
import { runFeed } from "./RunFeed.ts"

/** A comment line on an SSE stream that has been quiet this long, so proxies keep it open. */
const HEARTBEAT = Duration.seconds(15)
const START_SEARCH_PAGE = 1000

const failure = (status: number, error: string, reason: string) =>
  HttpServerResponse.unsafeJson({ error, reason }, { status })

const STATUS: Record<RequestError["code"], number> = {
  invalid_message: 400,
  not_found: 404,
  forbidden: 403,
  rate_limited: 429,
  busy: 409,
  internal: 503,
  unavailable: 503
}

const refused = (error: RequestError) => failure(STATUS[error.code], error.code, error.message)

const isIdentifier = Schema.is(Identifier)
const isText = Schema.is(Text)

/** The text of the last user message of `messages`, or why there is none to send. */
const lastUserText = (
  messages: ReadonlyArray<{ readonly role: string; readonly content?: unknown }>,
  maxChars: number
): { readonly text: string } | { readonly reason: string } => {
  const message = [...messages].reverse().find((m) => m.role === "user")
  if (message === undefined) return { reason: "messages holds no user message" }
  const content = message.content
  const text = typeof content === "string"
    ? content
    : Array.isArray(content)
    ? content.flatMap((part: { type?: unknown; text?: unknown }) =>
      part.type === "text" && typeof part.text === "string" ? [part.text] : []
    ).join("\n")
    : ""
  if (text.length === 0) return { reason: "the last user message has no text" }
  if (!isText(text)) return { reason: "the last user message must not contain U+0000 (NUL)" }
  if (text.length > maxChars) return { reason: `the last user message is longer than ${maxChars} characters` }
  return { text }
}

/**
 * The run's AG-UI events as SSE, from the stored events after `afterSeq`, leaving out those at or before
 * `position`; it ends after the run's terminal event. A lost database ends it too: the client resumes.
 */
const sse = (
  eventLog: typeof EventLog.Service,
  input: { readonly threadId: string; readonly runId: string; readonly userId: string; readonly afterSeq: number },
  position: Position | undefined
) => {
  const encoder = new EventEncoder()
  const frames = runFeed(eventLog, input).pipe(
    Stream.mapAccum(initialState, (state, stored) => {
      const { events, state: next } = step(input.threadId, input.runId, state, stored)
      const out = events.flatMap((event, index) =>
        isAfter(position, stored.seq, index)
          ? [`id: ${eventId(stored.seq, index, events.length)}\n${encoder.encodeSSE(event)}`]
          : []
      )
      return [next, out] as const
    }),
    Stream.mapConcat((out) => out),
    Stream.catchAllCause((cause) =>
      Stream.fromEffect(
        Effect.logWarning("AG-UI stream ended early; the client resumes with Last-Event-ID", cause).pipe(
          Effect.annotateLogs({ component: "agui", thread_id: input.threadId, run_id: input.runId })
        )
      ).pipe(Stream.drain)
    )
  )
  const heartbeat = Stream.fromSchedule(Schedule.spaced(HEARTBEAT)).pipe(Stream.as(": keep-alive\n\n"))
  const body = Stream.merge(frames, heartbeat, { haltStrategy: "left" }).pipe(Stream.encodeText)
  return HttpServerResponse.stream(body, {
    contentType: encoder.getContentType(),
    headers: { "cache-control": "no-cache", "x-accel-buffering": "no" }
  })
}

/** The thread, when the caller may read it: its head seq; None for one he may not see (a 404). */
const readable = (principal: Principal, threadId: string | undefined) =>
  threadId === undefined || !isIdentifier(threadId)
    ? Effect.succeed(Option.none<number>())
    : Effect.flatMap(Access, (access) => access.read(principal, threadId)).pipe(
      Effect.map(Option.some),
      Effect.catchTag("RequestError", () => Effect.succeed(Option.none<number>()))
    )

const threadNotFound = failure(404, "not_found", "thread not found")
const runNotFound = failure(404, "not_found", "run not found")

/** `POST /agui`: the last user message sent to the thread, the run it starts streamed as AG-UI. */
export const runAgent = authenticated((principal) =>
  Effect.gen(function*() {
    const request = yield* HttpServerRequest.HttpServerRequest
    const body = yield* Effect.either(request.json)
    if (body._tag === "Left") return failure(400, "invalid_message", "the body must be an AG-UI RunAgentInput (JSON)")
    const parsed = RunAgentInputSchema.safeParse(body.right)
    if (!parsed.success) {
      const issue = parsed.error.issues[0]
      const where = issue === undefined || issue.path.length === 0 ? "" : ` at ${issue.path.join(".")}`
      return failure(400, "invalid_message", `not an AG-UI RunAgentInput${where}: ${issue?.message ?? "invalid"}`)
    }
    const input = parsed.data
    const { limits } = yield* AppConfig
    const message = lastUserText(input.messages, limits.messageChars)
    if ("reason" in message) return failure(400, "invalid_message", message.reason)
    const head = yield* readable(principal, input.threadId)
    if (Option.isNone(head)) return threadNotFound
    const sent = yield* (yield* Supervisor).send(principal, input.threadId, message.text, () => Effect.void).pipe(
      Effect.either
    )
    if (sent._tag === "Left") {
      if (sent.left._tag === "RequestError") return refused(sent.left)
      return yield* Effect.fail(sent.left)
    }
    const runId = sent.right.runId
    if (runId === null) return failure(409, "busy", "the message was queued")
    // Every event of the run comes after the head read before the send.
    return sse(
      yield* EventLog,
      { threadId: input.threadId, runId, userId: principal.userId, afterSeq: head.value },
      undefined
    )
  })
)

/** The run of the path, in the thread of the path, which the caller may read. */
const pathRun = (principal: Principal) =>
  Effect.gen(function*() {
    const { thread_id, run_id } = yield* HttpRouter.params
    const head = yield* readable(principal, thread_id)
    if (Option.isNone(head) || thread_id === undefined) return { refusal: threadNotFound } as const
    if (run_id === undefined || !isIdentifier(run_id)) return { refusal: runNotFound } as const
    const run = yield* (yield* EventLog).findRun(run_id)
    if (Option.isNone(run) || run.value.threadId !== thread_id) return { refusal: runNotFound } as const
    return { threadId: thread_id, runId: run_id, head: head.value } as const
  })

/** The seq of the run's `agent_started`, searched back from `from`. */
const startOf = (eventLog: typeof EventLog.Service, threadId: string, runId: string, from: number) =>
  Effect.gen(function*() {
    for (let high = from; high > 0;) {
      const low = Math.max(0, high - START_SEARCH_PAGE)
      const events = yield* eventLog.read(threadId, low, high - low)
      const start = events.find((e) => e.run_id === runId && e.event_type === "agent_started")
      if (start !== undefined) return Option.some(start.seq)
      high = low
    }
    return Option.none<number>()
  })

/** `GET /agui/{thread_id}/runs/{run_id}/events`: the run's stream again, after `Last-Event-ID` if given. */
export const runEvents = authenticated((principal) =>
  Effect.gen(function*() {
    const request = yield* HttpServerRequest.HttpServerRequest
    const target = yield* pathRun(principal)
    if ("refusal" in target) return target.refusal
    const url = new URL(request.url, "http://localhost")
    const last = request.headers["last-event-id"] ?? url.searchParams.get("last_event_id") ?? undefined
    const position = last === undefined || last === "" ? undefined : parsePosition(last)
    if (last !== undefined && last !== "" && position === undefined) {
      return failure(400, "invalid_message", "Last-Event-ID must be an id of this stream: <seq> or <seq>.<index>")
    }
    const eventLog = yield* EventLog
    const start = yield* startOf(eventLog, target.threadId, target.runId, target.head)
    if (Option.isNone(start)) return runNotFound
    return sse(
      eventLog,
      { threadId: target.threadId, runId: target.runId, userId: principal.userId, afterSeq: start.value - 1 },
      position
    )
  })
)

/** `POST /agui/{thread_id}/runs/{run_id}/stop`: cancels the run, as `cancel_run` does. */
export const stopRun = authenticated((principal) =>
  Effect.gen(function*() {
    const target = yield* pathRun(principal)
    if ("refusal" in target) return target.refusal
    const cancelled = yield* (yield* Supervisor).cancel(principal, target.runId).pipe(Effect.either)
    if (cancelled._tag === "Left") {
      if (cancelled.left._tag === "RequestError") return refused(cancelled.left)
      return yield* Effect.fail(cancelled.left)
    }
    return HttpServerResponse.unsafeJson({ thread_id: target.threadId, run_id: target.runId, status: "cancelled" })
  })
)

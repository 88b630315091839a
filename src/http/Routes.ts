/**
 * The HTTP routes of PROTOCOL.md section 5: health, the dev token, the
 * threads API, AG-UI (src/agui) and the web page. `/ws` upgrades are handled beside them.
 */
import { HttpRouter, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { Effect, Either, Metric, Option, Schema } from "effect"
import { runAgent, runEvents, stopRun } from "../agui/AgUi.ts"
import { Auth, type Principal } from "../auth/Auth.ts"
import { authenticated } from "../auth/Bearer.ts"
import { DevTokens } from "../auth/DevTokens.ts"
import * as Database from "../database/Database.ts"
import { DatabaseMonitor } from "../database/Monitor.ts"
import { type ComponentHealth, down, up } from "../domain/Health.ts"
import { Readiness } from "../domain/Health.ts"
import { Broker } from "../eventlog/Broker.ts"
import { EventLog } from "../eventlog/EventLog.ts"
import { Hub } from "../gateway/Hub.ts"
import { ModelStatus } from "../llm/ModelStatus.ts"
import { PrometheusText } from "../metrics/Prometheus.ts"
import { describe, Identifier } from "../protocol/ClientFrames.ts"
import { encodeEnvelope } from "../protocol/Events.ts"
import { Supervisor } from "../runs/Supervisor.ts"
import { Access } from "../threads/Access.ts"
import { Threads } from "../threads/Threads.ts"
import { page } from "../web/Bundle.ts"

const json = (status: number, body: unknown) => HttpServerResponse.unsafeJson(body, { status })
const failure = (status: number, error: string, reason: string) => json(status, { error, reason })

/** The web page (src/web): built on first request, then served from memory. */
const webPage = Effect.tryPromise(page).pipe(
  Effect.map((html) => HttpServerResponse.html(html)),
  Effect.catchAll((error) =>
    Effect.zipRight(
      Effect.logError("the web page could not be built", error),
      Effect.succeed(failure(500, "internal", "the web page could not be built"))
    )
  )
)

const ready = Effect.gen(function*() {
  const state = yield* (yield* Readiness).get
  const broker = yield* Broker
  const hub = yield* Hub
  const supervisor = yield* Supervisor
  const monitor = yield* DatabaseMonitor
  const answers = yield* Database.ping.pipe(Effect.as(true), Effect.orElseSucceed(() => false))
  if (!answers || !monitor.isUp()) yield* monitor.nudge
  const database = !monitor.isUp()
    ? yield* monitor.health
    : answers
    ? up()
    : down("the database does not answer")
  const components: Record<string, ComponentHealth> = {
    database,
    auth: up({ algorithms: (yield* Auth).algorithms }),
    websocket: yield* hub.health,
    supervisor: yield* supervisor.health
  }
  const serving = Object.values(components).every((c) => c.status === "up")
  // A lost broker or a failing model shows here, but the node still serves: it reads other nodes' events
  // from the log until the broker returns, and history, members and cancels need no model. It stays in
  // the load balancer, which could not route around a Redis or a provider that every node shares anyway.
  const degradable = { broker: yield* broker.health, model: yield* (yield* ModelStatus).health }
  const whole = serving && degradable.broker.status === "up" && degradable.model.status === "up"
  const status = state !== "ready" ? state : whole ? "ready" : "degraded"
  return json(state === "ready" && serving ? 200 : 503, { status, components: { ...components, ...degradable } })
})

const metrics = Effect.gen(function*() {
  const hub = yield* Hub
  const stats = yield* hub.stats
  const counters = hub.counters
  const databaseUp = (yield* DatabaseMonitor).isUp() ? 1 : 0
  const brokerUp = (yield* (yield* Broker).health).status === "up" ? 1 : 0
  const modelUp = (yield* (yield* ModelStatus).health).status === "up" ? 1 : 0
  const text = new PrometheusText()
    .describe("agentchat_component_up", "gauge", "1 when the component answers its health check, else 0")
    .sample("agentchat_component_up", databaseUp, { component: "database" })
    .sample("agentchat_component_up", brokerUp, { component: "broker" })
    .sample("agentchat_component_up", modelUp, { component: "model" })
    .single("agentchat_connections_open", "gauge", "open WebSocket connections", stats.connections)
    .single("agentchat_thread_joins", "gauge", "threads joined, summed over connections", stats.subscriptions)
    .single("agentchat_connections_total", "counter", "WebSocket connections accepted", counters.connects)
    .single("agentchat_frames_in_total", "counter", "frames received from clients", counters.framesIn)
    .single("agentchat_frames_out_total", "counter", "frames written to clients", counters.framesOut)
    .single(
      "agentchat_events_delivered_total",
      "counter",
      "live events queued to connections",
      counters.eventsDelivered
    )
    .single(
      "agentchat_events_dropped_total",
      "counter",
      "frames discarded with a slow consumer (it replays them)",
      counters.eventsDropped
    )
    .single(
      "agentchat_slow_consumer_closes_total",
      "counter",
      "connections closed with 1013",
      counters.slowConsumerCloses
    )
    .describe("agentchat_outbox_depth", "histogram", "frames a connection's outbox held when flushed")
    .buckets("agentchat_outbox_depth", counters.outboxDepth)
    .single(
      "agentchat_runs_active",
      "gauge",
      "agent runs in progress on this node",
      yield* (yield* Supervisor).activeRuns
    )
    .effectMetrics(yield* Metric.snapshot, "agentchat_")
  return HttpServerResponse.text(text.toString(), { contentType: "text/plain; version=0.0.4; charset=utf-8" })
})

// The same Identifier Auth asks of a token's `sub`: a token issued here is one Auth accepts.
const DevTokenBody = Schema.Struct({ user_id: Identifier })

const devToken = Effect.gen(function*() {
  const tokens = yield* Effect.serviceOption(DevTokens)
  if (Option.isNone(tokens)) return failure(404, "not_found", "dev tokens exist only in development mode")
  const body = yield* HttpServerRequest.schemaBodyJson(DevTokenBody).pipe(Effect.either)
  if (Either.isLeft(body)) {
    const shape = "body must be {\"user_id\": \"…\"}"
    const reason = body.left._tag === "ParseError" ? `${shape}: ${describe(body.left)}` : shape
    return failure(400, "invalid_message", reason)
  }
  return json(200, { token: yield* tokens.value.issue(body.right.user_id) })
})

const listThreads = authenticated((principal) =>
  Effect.flatMap(Threads, (threads) => threads.listForUser(principal.userId)).pipe(
    Effect.map((list) => json(200, { threads: list }))
  )
)

const EventsQuery = Schema.Struct({
  after_seq: Schema.optionalWith(Schema.NumberFromString.pipe(Schema.int(), Schema.nonNegative()), {
    default: () => 0
  }),
  limit: Schema.optionalWith(Schema.NumberFromString.pipe(Schema.int(), Schema.between(1, 10_000)), {
    default: () => 1000
  })
})

const isIdentifier = Schema.is(Identifier)

/** The path's thread, when the caller may read it; else a 404 (an id no thread can have included). */
const readableThread = (principal: Principal) =>
  Effect.gen(function*() {
    const { thread_id } = yield* HttpRouter.params
    // No thread has an id that is not an Identifier; one with a NUL would even fail the query, as an outage.
    if (thread_id === undefined || !isIdentifier(thread_id)) return Option.none<string>()
    return yield* (yield* Access).read(principal, thread_id).pipe(
      Effect.as(Option.some(thread_id)),
      Effect.catchTag("RequestError", () => Effect.succeed(Option.none<string>()))
    )
  })

const threadNotFound = failure(404, "not_found", "thread not found")

const threadEvents = authenticated((principal) =>
  Effect.gen(function*() {
    const query = yield* HttpServerRequest.schemaSearchParams(EventsQuery).pipe(Effect.either)
    if (query._tag === "Left") {
      return failure(400, "invalid_message", "after_seq must be an integer ≥ 0 and limit an integer from 1 to 10000")
    }
    const thread = yield* readableThread(principal)
    if (Option.isNone(thread)) return threadNotFound
    const eventLog = yield* EventLog
    // Events first: a head read after them is never behind the last one returned.
    const events = yield* eventLog.read(thread.value, query.right.after_seq, query.right.limit)
    const head = yield* eventLog.head(thread.value)
    // The stored envelope, byte for byte what a WebSocket client receives.
    const body = `{"events":[${events.map(encodeEnvelope).join(",")}],"head_seq":${Option.getOrElse(head, () => 0)}}`
    return HttpServerResponse.text(body, { contentType: "application/json" })
  })
)

const threadDetails = authenticated((principal) =>
  Effect.gen(function*() {
    const thread = yield* readableThread(principal)
    if (Option.isNone(thread)) return threadNotFound
    const details = yield* (yield* Threads).describe(thread.value)
    return Option.match(details, { onNone: () => threadNotFound, onSome: (details) => json(200, details) })
  })
)

const internal = (error: unknown) =>
  Effect.zipRight(
    Effect.logError("request failed", error),
    Effect.succeed(failure(503, "unavailable", "a dependency is unavailable; retry shortly"))
  )

export const router = HttpRouter.empty.pipe(
  HttpRouter.get("/", webPage),
  HttpRouter.get("/favicon.ico", Effect.succeed(HttpServerResponse.empty({ status: 204 }))),
  HttpRouter.get("/health/live", Effect.succeed(json(200, { status: "ok" }))),
  HttpRouter.get("/health/ready", ready),
  HttpRouter.get("/metrics", metrics),
  HttpRouter.post("/api/dev/token", devToken),
  HttpRouter.get("/api/threads", listThreads),
  HttpRouter.get("/api/threads/:thread_id", threadDetails),
  HttpRouter.get("/api/threads/:thread_id/events", threadEvents),
  HttpRouter.post("/agui", runAgent),
  HttpRouter.get("/agui/:thread_id/runs/:run_id/events", runEvents),
  HttpRouter.post("/agui/:thread_id/runs/:run_id/stop", stopRun),
  HttpRouter.get("/ws", Effect.succeed(failure(426, "upgrade_required", "connect with a WebSocket"))),
  HttpRouter.catchAll(internal)
)

/** The routes as one app; unknown paths answer 404 in the same JSON shape. */
export const app = HttpRouter.toHttpApp(router).pipe(
  Effect.map(Effect.catchTag("RouteNotFound", () => Effect.succeed(failure(404, "not_found", "no such route"))))
)

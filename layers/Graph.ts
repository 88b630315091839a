/**
 * The layer graph, in startup order: Database, Broker, the event log,
 * Auth, Hub, Supervisor, then the HTTP server. Each mode (App,
 * Test) chooses the layers; the shape is the same for all.
 */
import type { LanguageModel } from "@effect/ai"
import type { PgClient } from "@effect/sql-pg"
import type * as SqlClient from "@effect/sql/SqlClient"
import { Clock, Effect, Layer, Metric } from "effect"
import type { Auth } from "../src/auth/Auth.ts"
import type { AppConfig } from "../src/config/AppConfig.ts"
import { DatabaseMonitorLive } from "../src/database/Monitor.ts"
import { ReadinessLive } from "../src/domain/Health.ts"
import type { Broker } from "../src/eventlog/Broker.ts"
import { EventLogLive } from "../src/eventlog/EventLog.ts"
import type { EventStore } from "../src/eventlog/EventStore.ts"
import { SqlEventStoreLive } from "../src/eventlog/SqlEventStore.ts"
import { HubLive } from "../src/gateway/Hub.ts"
import { HttpServerLive } from "../src/http/Server.ts"
import type { ModelInfo } from "../src/llm/ModelInfo.ts"
import { ModelStatusLive } from "../src/llm/ModelStatus.ts"
import * as Metrics from "../src/metrics/Metrics.ts"
import { TracingLive } from "../src/observability/Tracing.ts"
import { SupervisorLive } from "../src/runs/Supervisor.ts"
import { ToolDispatcherLive, type Tools } from "../src/runs/ToolDispatcher.ts"
import { AccessLive } from "../src/threads/Access.ts"
import { MembersLive } from "../src/threads/Members.ts"
import { Threads } from "../src/threads/Threads.ts"

export interface GraphLayers<E> {
  readonly config: Layer.Layer<AppConfig, E>
  readonly database: Layer.Layer<SqlClient.SqlClient | PgClient.PgClient, E, AppConfig>
  /** Below it the database and the event store, which the PostgreSQL broker reads and notifies through. */
  readonly broker: Layer.Layer<Broker, E, AppConfig | EventStore | SqlClient.SqlClient>
  /** Auth, and in development the dev-token issuer beside it. */
  readonly auth: Layer.Layer<Auth, E, AppConfig>
  /** The model: @effect/ai's LanguageModel (any provider), and which model it is. */
  readonly model: Layer.Layer<LanguageModel.LanguageModel | ModelInfo, E, AppConfig>
  readonly tools: Layer.Layer<Tools, E, Threads | AppConfig>
}

/** Logs a component as it comes up, with how long it took, so a slow start names its culprit. */
const timed = <A, E, R>(component: string, layer: Layer.Layer<A, E, R>): Layer.Layer<A, E, R> =>
  Layer.unwrapEffect(
    Effect.map(Clock.currentTimeMillis, (started) =>
      Layer.tap(layer, () =>
        Effect.flatMap(Clock.currentTimeMillis, (now) =>
          Effect.zipRight(
            Metric.set(Metric.tagged(Metrics.startupSeconds, "component", component), (now - started) / 1000),
            Effect.logInfo(`${component} up`).pipe(Effect.annotateLogs({ component, startup_ms: now - started }))
          ))))
  )

/** Every component, without the HTTP server. */
export const components = <E>(layers: GraphLayers<E>) =>
  timed("supervisor", SupervisorLive).pipe(
    Layer.provideMerge(
      Layer.mergeAll(
        timed("websocket", HubLive),
        ModelStatusLive.pipe(Layer.provideMerge(timed("model", layers.model)))
      )
    ),
    Layer.provideMerge(ToolDispatcherLive.pipe(Layer.provideMerge(layers.tools))),
    Layer.provideMerge(timed("auth", layers.auth)),
    Layer.provideMerge(MembersLive),
    Layer.provideMerge(AccessLive),
    Layer.provideMerge(EventLogLive),
    Layer.provideMerge(timed("broker", layers.broker)),
    Layer.provideMerge(SqlEventStoreLive),
    Layer.provideMerge(Threads.Default),
    Layer.provideMerge(DatabaseMonitorLive),
    Layer.provideMerge(timed("database", layers.database)),
    Layer.provideMerge(ReadinessLive),
    Layer.provideMerge(layers.config)
  )

/** The whole server: the components, then the port. */
export const server = <E>(layers: GraphLayers<E>) =>
  HttpServerLive.pipe(
    Layer.provideMerge(components(layers)),
    // Spans of every component go to the OTLP collector when one is configured.
    Layer.provide(Layer.provide(TracingLive, layers.config))
  )

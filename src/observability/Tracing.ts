/**
 * Tracing: Effect spans (connection, frame, run, tool call, ...) exported
 * over OTLP/HTTP (JSON) when `OTEL_EXPORTER_OTLP_ENDPOINT` is set; without
 * it spans stay in-process and nothing is sent anywhere.
 */
import * as OtlpSerialization from "@effect/opentelemetry/OtlpSerialization"
import * as OtlpTracer from "@effect/opentelemetry/OtlpTracer"
import { FetchHttpClient } from "@effect/platform"
import { Duration, Effect, Layer, Option } from "effect"
import { AppConfig } from "../config/AppConfig.ts"

export const TracingLive: Layer.Layer<never, never, AppConfig> = Layer.unwrapEffect(
  Effect.map(AppConfig, ({ tracing }) =>
    Option.match(tracing.otlpEndpoint, {
      onNone: () => Layer.empty,
      onSome: (endpoint) =>
        OtlpTracer.layer({
          url: `${endpoint}/v1/traces`,
          resource: { serviceName: tracing.serviceName },
          exportInterval: Duration.seconds(1),
          shutdownTimeout: Duration.seconds(3)
        }).pipe(Layer.provide(OtlpSerialization.layerJson), Layer.provide(FetchHttpClient.layer))
    }))
)

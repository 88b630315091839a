/**
 * Readiness: the server's lifecycle as `/health/ready` and `/ws` see it.
 * `starting` until the whole graph is built and the port is open,
 * `draining` from the moment shutdown begins.
 */
import { Context, Effect, Layer, Ref } from "effect"

export type Lifecycle = "starting" | "ready" | "draining"

export class Readiness extends Context.Tag("agent-chat/Readiness")<Readiness, {
  readonly get: Effect.Effect<Lifecycle>
  readonly set: (state: Lifecycle) => Effect.Effect<void>
}>() {}

export const ReadinessLive: Layer.Layer<Readiness> = Layer.effect(
  Readiness,
  Effect.map(Ref.make<Lifecycle>("starting"), (ref) => Readiness.of({ get: Ref.get(ref), set: (s) => Ref.set(ref, s) }))
)

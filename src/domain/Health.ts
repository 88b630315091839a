/**
 * Health: what each component reports to `/health/ready`, and the
 * server's lifecycle as `/health/ready` and `/ws` see it: `starting` until
 * the whole graph is built and the port is open, `draining` from the moment
 * shutdown begins.
 */
import { Context, Effect, Layer, Ref } from "effect"

export interface ComponentHealth {
  readonly status: "up" | "down"
  readonly [detail: string]: unknown
}

export const up = (details: Record<string, unknown> = {}): ComponentHealth => ({ ...details, status: "up" })
export const down = (reason: string): ComponentHealth => ({ status: "down", reason })

export type Lifecycle = "starting" | "ready" | "draining"

export class Readiness extends Context.Tag("agent-chat/Readiness")<Readiness, {
  readonly get: Effect.Effect<Lifecycle>
  readonly set: (state: Lifecycle) => Effect.Effect<void>
}>() {}

export const ReadinessLive: Layer.Layer<Readiness> = Layer.effect(
  Readiness,
  Effect.map(Ref.make<Lifecycle>("starting"), (ref) => Readiness.of({ get: Ref.get(ref), set: (s) => Ref.set(ref, s) }))
)

/**
 * ModelStatus: how the model has been answering, for `/health/ready`'s
 * `model` component: the provider, the model, the last failure and how
 * many requests in a row have failed. Three in a row turn it `down`, which
 * `/health/ready` shows without taking the node out of service (the
 * history and every other request still work).
 */
import { Clock, Context, Effect, Layer, Option, Ref } from "effect"
import type { ComponentHealth } from "../domain/Health.ts"
import { ModelInfo } from "./ModelInfo.ts"

export const DOWN_AFTER = 3

interface State {
  readonly failuresInARow: number
  readonly lastFailure: Option.Option<{ readonly reason: string; readonly at: string }>
}

export class ModelStatus extends Context.Tag("agent-chat/ModelStatus")<ModelStatus, {
  readonly succeeded: Effect.Effect<void>
  readonly failed: (reason: string) => Effect.Effect<void>
  readonly health: Effect.Effect<ComponentHealth>
}>() {}

export const ModelStatusLive: Layer.Layer<ModelStatus, never, ModelInfo> = Layer.effect(
  ModelStatus,
  Effect.gen(function*() {
    const info = yield* ModelInfo
    const state = yield* Ref.make<State>({ failuresInARow: 0, lastFailure: Option.none() })
    return ModelStatus.of({
      succeeded: Ref.update(state, (s) => ({ ...s, failuresInARow: 0 })),
      failed: (reason) =>
        Effect.flatMap(Clock.currentTimeMillis, (now) =>
          Ref.update(state, (s) => ({
            failuresInARow: s.failuresInARow + 1,
            lastFailure: Option.some({ reason, at: new Date(now).toISOString() })
          }))),
      health: Effect.map(Ref.get(state), (s): ComponentHealth => ({
        status: s.failuresInARow >= DOWN_AFTER ? "down" : "up",
        provider: info.provider,
        model: info.model,
        ...Option.match(info.baseUrl, { onNone: () => ({}), onSome: (url) => ({ base_url: url }) }),
        failures_in_a_row: s.failuresInARow,
        ...Option.match(s.lastFailure, { onNone: () => ({}), onSome: (f) => ({ last_failure: f }) })
      }))
    })
  })
)

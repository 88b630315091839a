/**
 * ModelInfo: which model the server's runs talk to, as `agent_started`,
 * `/health/ready` and the metrics name it. Every model layer provides it
 * beside @effect/ai's LanguageModel.
 */
import { LanguageModel } from "@effect/ai"
import { Context, Layer, Option, type Stream } from "effect"
import { type LlmError, makeSimpleModel, type ModelChunk, type ModelRequest } from "./SimpleModel.ts"

export interface ModelInfoShape {
  /** `openai-chat`, `openai-responses`, `anthropic`, `builtin`, or a test's own. */
  readonly provider: string
  readonly model: string
  /** The agent's name in `agent_started`. */
  readonly agent: string
  /** Where the provider is; none for an in-process model. */
  readonly baseUrl: Option.Option<string>
}

export class ModelInfo extends Context.Tag("agent-chat/ModelInfo")<ModelInfo, ModelInfoShape>() {}

/** A model layer from a plain function of the conversation (see SimpleModel). */
export const simpleModelLayer = (
  agent: string,
  turn: (request: ModelRequest) => Stream.Stream<ModelChunk, LlmError>,
  provider = "custom"
): Layer.Layer<LanguageModel.LanguageModel | ModelInfo> =>
  Layer.merge(
    Layer.effect(LanguageModel.LanguageModel, makeSimpleModel(agent, turn)),
    Layer.succeed(ModelInfo, { provider, model: agent, agent, baseUrl: Option.none() })
  )

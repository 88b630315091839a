/**
 * Compile-time proof, checked by `tsc --noEmit` in `npm test`: the
 * Supervisor cannot be built without the event log (the only way its runs'
 * events are stored and delivered) or without Access (the rule of who may
 * post and cancel), or without a model (@effect/ai's LanguageModel). It
 * does not need the WebSocket hub: runs never touch
 * the gateway, and the lint forbids runs/ importing it.
 */
import type { LanguageModel } from "@effect/ai"
import type { Layer } from "effect"
import { Layer as L } from "effect"
import type { AppConfig } from "../../src/config/AppConfig.ts"
import type { DatabaseMonitor } from "../../src/database/Monitor.ts"
import type { StartupError } from "../../src/domain/Errors.ts"
import type { EventLog } from "../../src/eventlog/EventLog.ts"
import type { ModelInfo } from "../../src/llm/ModelInfo.ts"
import type { ModelStatus } from "../../src/llm/ModelStatus.ts"
import { type Supervisor, SupervisorLive } from "../../src/runs/Supervisor.ts"
import type { ToolDispatcher } from "../../src/runs/ToolDispatcher.ts"
import type { Access } from "../../src/threads/Access.ts"
import type { Threads } from "../../src/threads/Threads.ts"

type Others =
  | Threads
  | DatabaseMonitor
  | LanguageModel.LanguageModel
  | ModelInfo
  | ModelStatus
  | ToolDispatcher
  | AppConfig

declare const everything: Layer.Layer<EventLog | Access | Others>
declare const withoutEventLog: Layer.Layer<Access | Others>
declare const withoutAccess: Layer.Layer<EventLog | Others>
declare const withoutModel: Layer.Layer<Exclude<EventLog | Access | Others, LanguageModel.LanguageModel>>

export const complete: Layer.Layer<Supervisor, StartupError> = SupervisorLive.pipe(L.provide(everything))

// @ts-expect-error the Supervisor requires the EventLog
export const noEventLog: Layer.Layer<Supervisor, StartupError> = SupervisorLive.pipe(L.provide(withoutEventLog))

// @ts-expect-error the Supervisor requires Access
export const noAccess: Layer.Layer<Supervisor, StartupError> = SupervisorLive.pipe(L.provide(withoutAccess))

// @ts-expect-error the Supervisor requires @effect/ai's LanguageModel
export const noModel: Layer.Layer<Supervisor, StartupError> = SupervisorLive.pipe(L.provide(withoutModel))

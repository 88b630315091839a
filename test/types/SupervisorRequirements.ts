/**
 * Compile-time proof, checked by `tsc --noEmit` in `npm test`: the
 * Supervisor cannot be built without the WebSocketHub or without Auth.
 */
import type { Layer } from "effect"
import { Layer as L } from "effect"
import type { LanguageModel } from "../../src/agents/LanguageModel.ts"
import { type Supervisor, SupervisorLive } from "../../src/agents/Supervisor.ts"
import type { ToolDispatcher } from "../../src/agents/ToolDispatcher.ts"
import type { Auth } from "../../src/auth/Auth.ts"
import type { AppConfig } from "../../src/config/AppConfig.ts"
import type { DatabaseMonitor } from "../../src/database/Monitor.ts"
import type { Threads } from "../../src/database/Threads.ts"
import type { StartupError } from "../../src/domain/Errors.ts"
import type { WebSocketHub } from "../../src/websocket/WebSocketHub.ts"

type Others = Threads | DatabaseMonitor | LanguageModel | ToolDispatcher | AppConfig

declare const everything: Layer.Layer<WebSocketHub | Auth | Others>
declare const withoutHub: Layer.Layer<Auth | Others>
declare const withoutAuth: Layer.Layer<WebSocketHub | Others>

export const complete: Layer.Layer<Supervisor, StartupError> = SupervisorLive.pipe(L.provide(everything))

// @ts-expect-error the Supervisor requires the WebSocketHub
export const noHub: Layer.Layer<Supervisor, StartupError> = SupervisorLive.pipe(L.provide(withoutHub))

// @ts-expect-error the Supervisor requires Auth
export const noAuth: Layer.Layer<Supervisor, StartupError> = SupervisorLive.pipe(L.provide(withoutAuth))

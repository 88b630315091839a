import { NodeRuntime } from "@effect/platform-node"
import { Effect, Layer } from "effect"
import { AppLive } from "../layers/App.ts"

Layer.launch(AppLive).pipe(
  Effect.tapErrorTag("StartupError", (error) => Effect.logError(error.message)),
  NodeRuntime.runMain({ disableErrorReporting: true })
)

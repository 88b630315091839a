import { NodeRuntime } from "@effect/platform-node"
import { program } from "../layers/App.ts"

program.pipe(NodeRuntime.runMain({ disableErrorReporting: true, disablePrettyLogger: true }))

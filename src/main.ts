import { NodeRuntime } from "@effect/platform-node"
import { program } from "../layers/App.ts"

// runMain stops listening after the first SIGINT/SIGTERM, and Node's default for a signal nobody
// listens to is to die at once: a repeat would cut the drain short and exit by signal. Repeats are
// the norm, not impatience: a signal to the process group reaches this process and npm, which
// forwards its own copy, and Ctrl-C is such a group signal. The drain is bounded by
// SHUTDOWN_GRACE_MS; SIGKILL remains for whoever cannot wait.
for (const signal of ["SIGINT", "SIGTERM"] as const) process.on(signal, () => {})

program.pipe(NodeRuntime.runMain({ disableErrorReporting: true, disablePrettyLogger: true }))

#!/usr/bin/env node
// The command line, run from the TypeScript sources through tsx (a dependency of the server too).
import { register } from "tsx/esm/api"

register()
const { main } = await import("../src/cli/main.ts")
process.exit(await main(process.argv.slice(2)))

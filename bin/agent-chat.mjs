#!/usr/bin/env node
// The command line: from the TypeScript sources through tsx in the repository, from dist/ when installed.
import { existsSync } from "node:fs"

const sources = new URL("../src/cli/main.ts", import.meta.url)
let main
if (existsSync(sources)) {
  const { register } = await import("tsx/esm/api")
  register()
  main = (await import(sources.href)).main
} else {
  main = (await import(new URL("../dist/cli/main.js", import.meta.url).href)).main
}
process.exit(await main(process.argv.slice(2)))

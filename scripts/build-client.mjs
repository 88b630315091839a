/**
 * Builds `agent-chat/client` into dist/: JavaScript and declarations of
 * src/client and the protocol it is built on (tsconfig.client.json), and
 * the command line on it (tsconfig.cli.json, with Node's types), then
 * points the declarations' relative imports at the built files (`.ts` ->
 * `.js`), as tsc rewrites them in the JavaScript only.
 */
import { execFileSync } from "node:child_process"
import { readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { createRequire } from "node:module"
import { join } from "node:path"
import { fileURLToPath } from "node:url"

const root = fileURLToPath(new URL("..", import.meta.url))
const dist = join(root, "dist")
rmSync(dist, { recursive: true, force: true })
const tsc = createRequire(import.meta.url).resolve("typescript/bin/tsc")
for (const project of ["tsconfig.client.json", "tsconfig.cli.json"]) {
  execFileSync(process.execPath, [tsc, "-p", join(root, project)], { stdio: "inherit" })
}

const declarations = (dir) =>
  readdirSync(dir, { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory()
      ? declarations(join(dir, entry.name))
      : entry.name.endsWith(".d.ts")
      ? [join(dir, entry.name)]
      : []
  )
for (const file of declarations(dist)) {
  const text = readFileSync(file, "utf8")
  writeFileSync(file, text.replace(/(from\s+|import\()"(\.\.?\/[^"]+)\.ts"/g, "$1\"$2.js\""))
}

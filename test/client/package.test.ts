/**
 * The SDK as a user gets it: `npm pack` (which builds dist/ by `prepack`),
 * a throw-away project in the system's temp directory that installs the
 * tarball with npm, type-checks a small program against its declarations
 * (with the repository's TypeScript, library checks on), runs it against a
 * real server, and bundles the SDK for a browser with nothing of Node in.
 *
 * The machine reaches no registry, so the project's node_modules first
 * links the package's own dependencies (effect, ws and the server's) to
 * the repository's installed copies: npm sees them satisfied and installs
 * only the tarball, offline.
 */
import { expect, layer } from "@effect/vitest"
import { build } from "esbuild"
import { execFile } from "node:child_process"
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import { promisify } from "node:util"
import { TestServer, withServer } from "../utils/TestServer.ts"
import { sign } from "../utils/tokens.ts"

const run = promisify(execFile)
const root = fileURLToPath(new URL("../..", import.meta.url))
const tsc = join(root, "node_modules", "typescript", "bin", "tsc")
const npmEnv = { ...process.env, npm_config_update_notifier: "false", npm_config_fund: "false" }

const program = (url: string, token: string) => `
import { connect, type TerminalEvent, type ThreadEvent } from "agent-chat/client"

const client = await connect({ url: ${JSON.stringify(url)}, token: async () => ${JSON.stringify(token)} })
const thread = await client.createThread({ title: "from the packed package" })
const run = await thread.send("what is 2+2")
const kinds: Array<ThreadEvent["event_type"]> = []
for await (const event of run.events) kinds.push(event.event_type)
const end: TerminalEvent = await run.done
if (end.event_type === "agent_completed") console.log(JSON.stringify({ answer: end.data.response, kinds }))
else console.log(JSON.stringify({ failed: end.data.code }))
client.close()
`

/** A program the declarations must refuse: `data` is typed per event type, not `any`. */
const wrongProgram = `
import type { ThreadEventOf } from "agent-chat/client"
export const answer = (event: ThreadEventOf<"agent_completed">): number => event.data.response
export const missing = (event: ThreadEventOf<"agent_thinking">): string => event.data.delta
`

const tsconfig = {
  compilerOptions: {
    target: "ES2022",
    module: "NodeNext",
    moduleResolution: "NodeNext",
    lib: ["ES2022", "DOM"],
    types: [],
    strict: true,
    exactOptionalPropertyTypes: true,
    skipLibCheck: false,
    outDir: "out"
  },
  files: ["main.ts"]
}

const linkDependencies = (project: string) => {
  const manifest = JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as {
    readonly dependencies: Record<string, string>
  }
  for (const name of Object.keys(manifest.dependencies)) {
    const target = join(project, "node_modules", name)
    mkdirSync(dirname(target), { recursive: true })
    symlinkSync(join(root, "node_modules", name), target, "dir")
  }
}

layer(TestServer.layer(), { excludeTestServices: true, timeout: 120_000 })("the packed package", (it) => {
  it.effect(
    "installs from its tarball, type-checks a program, runs it against a server, bundles for a browser",
    () =>
      withServer(async (server) => {
        const project = mkdtempSync(join(tmpdir(), "agent-chat-sdk-"))
        try {
          const timings: Record<string, number> = {}
          const step = async <A>(name: string, body: () => Promise<A>) => {
            const started = Date.now()
            const result = await body()
            timings[name] = Date.now() - started
            return result
          }
          const { stdout: packed } = await step(
            "pack",
            () => run("npm", ["pack", "--pack-destination", project, "--silent"], { cwd: root, env: npmEnv })
          )
          const tarball = packed.trim().split("\n").at(-1)!
          writeFileSync(
            join(project, "package.json"),
            JSON.stringify({ name: "sdk-user", private: true, type: "module" })
          )
          linkDependencies(project)
          await step(
            "install",
            () =>
              run("npm", ["install", `./${tarball}`, "--offline", "--ignore-scripts", "--no-audit", "--no-fund"], {
                cwd: project,
                env: npmEnv
              })
          )
          const installed = join(project, "node_modules", "agent-chat")
          expect(readFileSync(join(installed, "dist", "client", "index.d.ts"), "utf8")).toContain("AgentChatClient")

          // The declarations refuse a wrong use: type errors, not `any`.
          writeFileSync(join(project, "main.ts"), wrongProgram)
          writeFileSync(
            join(project, "tsconfig.json"),
            JSON.stringify({ ...tsconfig, compilerOptions: { ...tsconfig.compilerOptions, noEmit: true } })
          )
          const refused = await run(process.execPath, [tsc, "-p", project], { cwd: project }).then(
            () => "",
            (error: { readonly stdout: string }) => error.stdout
          )
          expect(refused).toMatch(/main\.ts\(3,[0-9]+\): error TS2322/)
          expect(refused).toMatch(/main\.ts\(4,[0-9]+\): error TS2339: Property 'delta' does not exist/)

          // The program type-checks and builds, then runs against the server.
          const token = await sign("sdk-packed")
          writeFileSync(join(project, "main.ts"), program(server.wsUrl, token))
          writeFileSync(join(project, "tsconfig.json"), JSON.stringify(tsconfig))
          await step("typecheck", () => run(process.execPath, [tsc, "-p", project], { cwd: project }))
          const { stdout } = await step(
            "run",
            () => run(process.execPath, [join(project, "out", "main.js")], { cwd: project, timeout: 30_000 })
          )
          const printed = JSON.parse(stdout.trim()) as { readonly answer: string; readonly kinds: Array<string> }
          expect(printed.answer).toContain("4")
          expect(printed.kinds[0]).toBe("agent_started")
          expect(printed.kinds.at(-1)).toBe("agent_completed")

          // The command line comes with it, built: one-shot against the server, exit 0.
          const cli = await step("cli", () =>
            run(join(project, "node_modules", ".bin", "agent-chat"), [
              "chat",
              "--url",
              server.wsUrl,
              "--token",
              token,
              "--message",
              "what is 2+2"
            ], { cwd: project, timeout: 30_000 }))
          expect(cli.stdout).toMatch(/completed in \d+ ms/)

          // A browser bundle of the SDK: it resolves with nothing of Node, and never names `ws` as a module.
          const bundle = await step("bundle", () =>
            build({
              stdin: { contents: `export * from "agent-chat/client"`, resolveDir: project },
              bundle: true,
              platform: "browser",
              format: "esm",
              write: false,
              logLevel: "silent"
            }))
          const code = bundle.outputFiles[0]!.text
          expect(code).not.toMatch(/from\s*["'](ws|node:[a-z_]+)["']|require\(["'](ws|node:[a-z_]+)["']\)/)
          console.log(`packed-package test steps (ms): ${JSON.stringify(timings)}`)
        } finally {
          rmSync(project, { recursive: true, force: true })
        }
      }),
    120_000
  )
})

/** Runs the real server as a child process, as `npm start` does. */
import { type ChildProcess, spawn } from "node:child_process"
import { createServer } from "node:net"
import { fileURLToPath } from "node:url"
import { ChatClient } from "./ChatClient.ts"

const root = fileURLToPath(new URL("../..", import.meta.url))

export interface Exited {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
  readonly output: string
}

export interface Started {
  readonly child: ChildProcess
  /** As soon as the process has exited (a process it left behind may still be writing to its output). */
  readonly exit: Promise<Omit<Exited, "output">>
  /** Once it has exited and its output is closed, so the output is complete. */
  readonly exited: Promise<Exited>
  readonly output: () => string
}

export const freePort = () =>
  new Promise<number>((resolve, reject) => {
    const server = createServer()
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      server.close(() => resolve(typeof address === "object" && address !== null ? address.port : 0))
    })
  })

export interface StartOptions {
  /** Run in a process group of its own (the child's pid is its id), to signal or inspect the whole group. */
  readonly detached?: boolean
  /** Give it a standard input to write to (`child.stdin`); none by default. */
  readonly stdin?: boolean
}

/** Starts a command in the project root with only the given environment (plus PATH and HOME). */
export const start = (
  command: string,
  args: ReadonlyArray<string>,
  env: Record<string, string>,
  options: StartOptions = {}
): Started => {
  const child = spawn(command, args, {
    cwd: root,
    env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "", ...env },
    stdio: [options.stdin === true ? "pipe" : "ignore", "pipe", "pipe"],
    detached: options.detached === true
  })
  let output = ""
  child.stdout!.on("data", (chunk: Buffer) => output += chunk.toString())
  child.stderr!.on("data", (chunk: Buffer) => output += chunk.toString())
  const exit = new Promise<Omit<Exited, "output">>((resolve) =>
    child.once("exit", (code, signal) => resolve({ code, signal }))
  )
  const exited = new Promise<Exited>((resolve) =>
    child.once("close", (code, signal) => resolve({ code, signal, output }))
  )
  return { child, exit, exited, output: () => output }
}

/** The documented production launch: one node process, no wrapper between the signal and the server. */
export const startMain = (env: Record<string, string>, options?: StartOptions) =>
  start(process.execPath, ["--import", "tsx", "src/main.ts"], env, options)

/** `npm start` as a user or a container entrypoint runs it. */
export const startNpm = (env: Record<string, string>, options?: StartOptions) =>
  // The update check would reach out to the registry from a test.
  start("npm", ["start"], { npm_config_update_notifier: "false", ...env }, options)

/** Polls a URL until it answers `status`, or fails after the deadline. */
export const waitForStatus = async (url: string, status: number, timeoutMs: number) => {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    const answered = await fetch(url).then((r) => r.status, () => 0)
    if (answered === status) return
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  throw new Error(`${url} did not answer ${status} within ${timeoutMs} ms`)
}

/** Whether any process of the group is left (zombies included: they are only gone once reaped). */
export const groupAlive = (pgid: number) => {
  try {
    process.kill(-pgid, 0)
    return true
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ESRCH") return false
    throw error
  }
}

/** Waits until no process of the group is left, or fails after the deadline. */
export const waitGroupGone = async (pgid: number, timeoutMs: number) => {
  const deadline = Date.now() + timeoutMs
  while (groupAlive(pgid)) {
    if (Date.now() >= deadline) throw new Error(`processes of group ${pgid} still running after ${timeoutMs} ms`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

/** SIGKILLs whatever is left of the group: a failed test must not leave a server running. */
export const killGroup = (pgid: number) => {
  try {
    process.kill(-pgid, "SIGKILL")
  } catch {
    // already gone
  }
}

/** The promise, or a rejection naming `what` once the deadline passes. */
export const within = <A>(promise: Promise<A>, timeoutMs: number, what: string) => {
  let timer: NodeJS.Timeout | undefined
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} within ${timeoutMs} ms`)), timeoutMs)
    })
  ]).finally(() => clearTimeout(timer))
}

/** A dev token for `userId` from a development server on `port`, and a client connected with it. */
export const devClient = async (port: number, userId: string) => {
  const { token } = await (await fetch(`http://127.0.0.1:${port}/api/dev/token`, {
    method: "POST",
    body: JSON.stringify({ user_id: userId })
  })).json()
  return { token: token as string, client: await ChatClient.connect(`ws://127.0.0.1:${port}/ws`, { token }) }
}

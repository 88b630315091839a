/**
 * The benchmark's child processes: a server (agent-chat, raw ws or Socket.IO) pinned
 * to core 0 and a load generator pinned to core 1 with `taskset`. Every
 * wait has a deadline, and every child is tracked so that it is killed at
 * the end, on error or on a signal.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import { setPriority, tmpdir } from "node:os"
import { join } from "node:path"
import {
  READY_PREFIX,
  type ReadyLine,
  RESULT_PREFIX,
  type ServerKind,
  type WireProtocol,
  withDeadline
} from "./common.ts"
import type { LoadResult } from "./workloads.ts"

const PRIORITY = -10
const SERVER_CORE = "0"
const LOAD_CORE = "1"
const SERVER_START_MS = 60_000
const STOP_GRACE_MS = 3_000
const OUTPUT_TAIL = 20_000
const SERVER_FILES: Record<ServerKind, string> = {
  baseline: "baseline.ts",
  "agent-chat": "server.ts",
  socketio: "socketio.ts"
}

export interface RunningServer {
  readonly child: ChildProcess
  readonly ready: ReadyLine
  readonly output: () => string
  /** Set once the process has exited: how. */
  readonly exited: () => string | undefined
}

/** Where the load generator connects: its clients' WebSocket port, and the control ports. */
export interface LoadPorts {
  readonly wsPort: number
  /** The control channel of the server that publishes. */
  readonly controlPort: number
  /** The control channel of the server the clients are connected to, when it is another one. */
  readonly receiverControlPort?: number
  /** What the clients speak; agent-chat's protocol when absent. */
  readonly protocol?: WireProtocol
}

/** The servers of one run, started and ready. */
export interface Deployment {
  readonly servers: ReadonlyArray<RunningServer>
  readonly ports: LoadPorts
  /** Other processes whose CPU is the run's own (the database's backends, Redis): their command lines. */
  readonly services?: RegExp
  /** The PostgreSQL database the servers use, when it is a server's. */
  readonly databaseUrl?: string
  /** Stops the servers and removes what they used. */
  readonly stop: () => Promise<void>
}

export class Processes {
  readonly pinned: boolean
  readonly notes: Array<string> = []
  private readonly children = new Set<ChildProcess>()
  /** The servers' temporary files (the embedded database) go here, removed with the children. */
  private readonly tmp = mkdtempSync(join(tmpdir(), "agent-chat-bench-"))

  constructor(private readonly root: string, cpus: number) {
    const taskset = spawnSync("taskset", ["-c", LOAD_CORE, "true"]).status === 0
    this.pinned = taskset && cpus >= 2
    if (!this.pinned) {
      this.notes.push(
        `not pinned (${taskset ? `only ${cpus} CPU` : "taskset unavailable"}): server and load share the CPUs`
      )
    }
    // Children inherit the niceness: other work on a shared machine then disturbs the figures less.
    try {
      setPriority(PRIORITY)
    } catch {
      this.notes.push(`could not raise the priority to nice ${PRIORITY}: other processes compete at equal priority`)
    }
  }

  private spawn(core: string, args: ReadonlyArray<string>, env: Readonly<Record<string, string>> = {}): ChildProcess {
    const command = this.pinned ? "taskset" : process.execPath
    const argv = this.pinned ? ["-c", core, process.execPath, ...args] : [...args]
    const child = spawn(command, argv, {
      cwd: this.root,
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, ...env, BENCH_TMPDIR: this.tmp }
    })
    this.children.add(child)
    child.once("exit", () => this.children.delete(child))
    return child
  }

  private static capture(child: ChildProcess) {
    let output = ""
    const append = (chunk: Buffer) => {
      output = (output + chunk.toString()).slice(-OUTPUT_TAIL)
    }
    child.stdout?.on("data", append)
    child.stderr?.on("data", append)
    return () => output
  }

  /** Lines of stdout that start with `prefix`, as JSON. */
  private static linesWith(child: ChildProcess, prefix: string, onLine: (json: unknown) => void) {
    let buffered = ""
    child.stdout?.on("data", (chunk: Buffer) => {
      buffered += chunk.toString()
      let newline = buffered.indexOf("\n")
      while (newline >= 0) {
        const line = buffered.slice(0, newline)
        buffered = buffered.slice(newline + 1)
        if (line.startsWith(prefix)) onLine(JSON.parse(line.slice(prefix.length)))
        newline = buffered.indexOf("\n")
      }
      if (buffered.length > 10_000_000) buffered = ""
    })
  }

  /** A server on core 0; `env` adds to the environment (the `nodes` workload's database and broker). */
  async startServer(kind: ServerKind, env: Readonly<Record<string, string>> = {}): Promise<RunningServer> {
    const file = `scripts/bench/${SERVER_FILES[kind]}`
    // BENCH_CPU_PROF=<dir> writes a V8 CPU profile of each server process there (on a clean exit).
    const profile = process.env.BENCH_CPU_PROF ? ["--cpu-prof", `--cpu-prof-dir=${process.env.BENCH_CPU_PROF}`] : []
    const child = this.spawn(SERVER_CORE, ["--expose-gc", ...profile, "--import", "tsx", file], env)
    const output = Processes.capture(child)
    let exited: string | undefined
    const ready = new Promise<ReadyLine>((resolve, reject) => {
      Processes.linesWith(child, READY_PREFIX, (json) => resolve(json as ReadyLine))
      child.once("exit", (code, signal) => {
        exited = `code ${code} signal ${signal}`
        reject(new Error(`the ${kind} server exited (${exited}) before it was ready:\n${output().slice(-3000)}`))
      })
    })
    try {
      return {
        child,
        ready: await withDeadline(ready, SERVER_START_MS, `${kind} server start`),
        output,
        exited: () => exited
      }
    } catch (error) {
      await this.stop({ child })
      throw error
    }
  }

  /** One server of `kind`, as the single-node workloads run it; `env` adds to its environment. */
  async deploy(kind: ServerKind, env: Readonly<Record<string, string>> = {}): Promise<Deployment> {
    const server = await this.startServer(kind, env)
    return {
      servers: [server],
      ports: {
        wsPort: server.ready.wsPort,
        controlPort: server.ready.controlPort,
        ...(kind === "socketio" ? { protocol: "socket.io" as const } : {})
      },
      stop: () => this.stop(server)
    }
  }

  async runLoad(ports: LoadPorts, spec: unknown, deadlineMs: number): Promise<LoadResult> {
    const input = { ...ports, deadlineMs, spec }
    const child = this.spawn(LOAD_CORE, [
      "--expose-gc",
      "--import",
      "tsx",
      "scripts/bench/load.ts",
      JSON.stringify(input)
    ])
    const output = Processes.capture(child)
    const result = new Promise<LoadResult>((resolve, reject) => {
      let found: LoadResult | undefined
      Processes.linesWith(child, RESULT_PREFIX, (json) => found = json as LoadResult)
      child.once("exit", (code, signal) => {
        if (found !== undefined) resolve(found)
        else {reject(
            new Error(`the load generator exited (code ${code} signal ${signal}) without a result:\n${output()}`)
          )}
      })
    })
    try {
      return await withDeadline(result, deadlineMs + 15_000, "load generator")
    } finally {
      await this.stop({ child })
    }
  }

  /** SIGTERM, then SIGKILL after a grace period; resolves once the process is gone. */
  async stop({ child }: { readonly child: ChildProcess }) {
    if (child.exitCode !== null || child.signalCode !== null) return
    const gone = new Promise<void>((resolve) => child.once("exit", () => resolve()))
    child.kill("SIGTERM")
    await withDeadline(gone, STOP_GRACE_MS, "stop").catch(() => {
      child.kill("SIGKILL")
      return withDeadline(gone, STOP_GRACE_MS, "kill").catch(() => {})
    })
  }

  killAll() {
    for (const child of this.children) child.kill("SIGKILL")
    rmSync(this.tmp, { recursive: true, force: true })
  }
}

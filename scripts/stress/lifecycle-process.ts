/**
 * The lifecycle scenario's server processes and their database. Each
 * process is a child running lifecycle-server.ts; every child still alive
 * is killed when the scenario ends, and when this process exits, so a
 * failure never leaves a server behind. The database outlives the
 * children: a PGlite data directory, or a database created on the
 * PostgreSQL at TEST_DATABASE_URL, removed at the end.
 */
import { PgClient } from "@effect/sql-pg"
import { Effect, Redacted } from "effect"
import { type ChildProcess, spawn } from "node:child_process"
import { randomUUID } from "node:crypto"
import { mkdtemp, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { createInterface } from "node:readline"
import { fileURLToPath } from "node:url"
import { ORPHANED_LOG } from "./lifecycle-check.ts"

const root = fileURLToPath(new URL("../..", import.meta.url))
const entry = fileURLToPath(new URL("./lifecycle-server.ts", import.meta.url))

/** What the server processes logged, all of them together. */
export interface ProcessLogs {
  errors: number
  /** Warnings that a run was ended because its process stopped: one per run a kill left behind. */
  reaped: number
  /** Any other warning, and any line on stderr that is not a log line. */
  otherWarnings: number
  readonly first: Array<string>
}

export const emptyLogs = (): ProcessLogs => ({ errors: 0, reaped: 0, otherWarnings: 0, first: [] })

export interface ServerProcess {
  readonly wsUrl: string
  readonly httpUrl: string
  /** SIGKILL, and once the process is gone (its database is free again). */
  readonly kill: () => Promise<void>
}

const alive = new Set<ChildProcess>()
let reaperInstalled = false

const note = (logs: ProcessLogs, line: string) => logs.first.length < 8 && logs.first.push(line.slice(0, 400))

const record = (logs: ProcessLogs, line: string) => {
  let entry: { level?: string; message?: string } | undefined
  try {
    entry = JSON.parse(line)
  } catch {
    entry = undefined
  }
  if (entry?.level === "error" || entry?.level === "fatal") {
    logs.errors++
    note(logs, line)
  } else if (entry?.level === "warn" || entry?.level === "warning") {
    if (entry.message === ORPHANED_LOG) logs.reaped++
    else {
      logs.otherWarnings++
      note(logs, line)
    }
  } else if (line.trim().length > 0) {
    logs.otherWarnings++
    note(logs, line)
  }
}

/** Starts a server process on `env`'s database; resolves once it listens. */
export const startProcess = (env: Record<string, string>, logs: ProcessLogs, timeoutMs: number) =>
  new Promise<ServerProcess>((resolve, reject) => {
    if (!reaperInstalled) {
      reaperInstalled = true
      process.on("exit", () => alive.forEach((child) => child.kill("SIGKILL")))
    }
    const child = spawn(process.execPath, ["--import", "tsx", entry], {
      cwd: root,
      env: { ...process.env, ...env },
      stdio: ["pipe", "pipe", "pipe"]
    })
    alive.add(child)
    const exited = new Promise<void>((done) =>
      child.once("exit", () => {
        alive.delete(child)
        done()
      })
    )
    const kill = async () => {
      child.kill("SIGKILL")
      await exited
    }
    const timer = setTimeout(() => {
      void kill()
      reject(new Error(`the server process did not listen within ${timeoutMs} ms`))
    }, timeoutMs)
    let lastLine = ""
    createInterface({ input: child.stderr }).on("line", (line) => {
      lastLine = line
      record(logs, line)
    })
    createInterface({ input: child.stdout }).on("line", (line) => {
      const port = /^\{"port":(\d+)\}$/.exec(line)?.[1]
      if (port === undefined) return record(logs, line)
      clearTimeout(timer)
      resolve({ wsUrl: `ws://127.0.0.1:${port}/ws`, httpUrl: `http://127.0.0.1:${port}`, kill })
    })
    void exited.then(() => {
      clearTimeout(timer)
      reject(new Error(`the server process exited before it listened: ${lastLine.slice(0, 400)}`))
    })
  })

/** Kills every server process still running, and waits for each to be gone. */
export const killAll = () =>
  Promise.all([...alive].map((child) =>
    new Promise<void>((done) => {
      child.once("exit", () => done())
      child.kill("SIGKILL")
    })
  ))

export interface LifecycleDatabase {
  /** Where the server processes find it. */
  readonly env: Record<string, string>
  readonly kind: "pglite" | "postgres"
  readonly remove: () => Promise<void>
}

const admin = (url: string, statement: string) =>
  Effect.runPromise(
    Effect.flatMap(PgClient.PgClient, (sql) => sql.unsafe(statement)).pipe(
      Effect.provide(PgClient.layer({ url: Redacted.make(url), maxConnections: 1 })),
      Effect.scoped
    )
  )

/** A database on TEST_DATABASE_URL's server when set, else a PGlite data directory. */
export const lifecycleDatabase = async (): Promise<LifecycleDatabase> => {
  const adminUrl = process.env.TEST_DATABASE_URL
  if (adminUrl !== undefined && adminUrl.length > 0) {
    const name = `agent_chat_lifecycle_${randomUUID().replaceAll("-", "").slice(0, 16)}`
    await admin(adminUrl, `CREATE DATABASE ${name}`)
    const url = new URL(adminUrl)
    url.pathname = `/${name}`
    return {
      env: { LIFECYCLE_DATABASE_URL: url.toString() },
      kind: "postgres",
      remove: () => admin(adminUrl, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`).then(() => undefined)
    }
  }
  const dir = await mkdtemp(join(tmpdir(), "agent-chat-lifecycle-"))
  return {
    env: { LIFECYCLE_DATA_DIR: join(dir, "pg"), LIFECYCLE_DATABASE_URL: "" },
    kind: "pglite",
    remove: () => rm(dir, { recursive: true, force: true })
  }
}

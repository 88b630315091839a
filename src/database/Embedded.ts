/**
 * Embedded PostgreSQL: PGlite behind its Postgres-protocol socket server,
 * so the rest of the code talks to it with the same client as to a real
 * server (STACK-NOTES: "PGlite + pglite-socket"). It runs on a worker
 * thread of its own (embedded-worker.mjs): a query's WebAssembly then never
 * holds up the event loop that delivers events.
 *
 * A new data directory is made (PostgreSQL's initdb) by a process of its
 * own first, which then exits: initdb leaves about 450 MB of PGlite's
 * memory behind where it ran (measured: 784 MB of RSS for a database
 * opened on a new directory, 309 MB on an existing one), and a worker
 * thread that ends still leaves 70 MB of it with the process's allocator.
 * `shared_buffers` is 16 MB rather than PGlite's 128 MB: another 100 MB or
 * so, where one node's threads and events fit in far less. The database
 * then costs the process about 145 MB (measured).
 *
 * Without a data directory (the tests' in-memory databases) there is
 * nothing to make first: initdb runs in the database's thread.
 */
import { Context, Duration, Effect, Layer, Option, Redacted } from "effect"
import { spawn } from "node:child_process"
import { existsSync, mkdirSync } from "node:fs"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { Worker } from "node:worker_threads"
import { StartupError } from "../domain/Errors.ts"

export class Embedded extends Context.Tag("agent-chat/database/Embedded")<Embedded, {
  readonly url: Redacted.Redacted
}>() {}

const WORKER = new URL("./embedded-worker.mjs", import.meta.url)
const POSTGRESQL_CONF = ["shared_buffers = 16MB"]
/** How long the database may take to close before its thread is terminated. */
const STOP_GRACE = Duration.seconds(10)

interface WorkerData {
  readonly dataDir: string | undefined
  readonly maxConnections: number
  readonly postgresqlconf: ReadonlyArray<string>
}

type Reply = { readonly url: string } | { readonly error: string }

/** Makes a new data directory in a process of its own, which gives all of initdb's memory back when it exits. */
const initialise = (dataDir: string) =>
  Effect.async<void, Error>((resume) => {
    const child = spawn(process.execPath, [fileURLToPath(WORKER), dataDir, JSON.stringify(POSTGRESQL_CONF)], {
      stdio: ["ignore", "ignore", "pipe"]
    })
    let stderr = ""
    child.stderr.on("data", (chunk: Buffer) => stderr = (stderr + chunk.toString()).slice(-2000))
    child.once("error", (error) => resume(Effect.fail(error)))
    child.once("exit", (code, signal) =>
      resume(
        code === 0
          ? Effect.void
          : Effect.fail(new Error(stderr.trim() || `initdb exited with code ${code} signal ${signal}`))
      ))
    return Effect.sync(() => child.kill("SIGKILL"))
  })

/** A worker thread of embedded-worker.mjs and its first message. */
const start = (workerData: WorkerData) =>
  Effect.async<{ readonly worker: Worker; readonly reply: Reply }, Error>((resume) => {
    const worker = new Worker(WORKER, { workerData })
    const onMessage = (reply: Reply) => {
      worker.off("exit", onExit)
      worker.off("error", onError)
      if ("error" in reply) {
        void worker.terminate()
        resume(Effect.fail(new Error(reply.error)))
      } else resume(Effect.succeed({ worker, reply }))
    }
    const onError = (error: Error) => {
      worker.off("message", onMessage)
      worker.off("exit", onExit)
      resume(Effect.fail(error))
    }
    const onExit = (code: number) => {
      worker.off("message", onMessage)
      worker.off("error", onError)
      resume(Effect.fail(new Error(`the embedded database's thread ended (code ${code}) before it was ready`)))
    }
    worker.once("message", onMessage)
    worker.once("error", onError)
    worker.once("exit", onExit)
    return Effect.promise(() => worker.terminate())
  })

/** Resolves once the worker has ended. */
const ended = (worker: Worker) =>
  Effect.async<void>((resume) => {
    if (worker.threadId === -1) return resume(Effect.void)
    worker.once("exit", () => resume(Effect.void))
  })

/** Asks the serving thread to close the database, and waits for it (terminating it after STOP_GRACE). */
const stop = (worker: Worker) =>
  Effect.async<void>((resume) => {
    worker.once("message", () => resume(Effect.void))
    worker.once("exit", () => resume(Effect.void))
    worker.postMessage("stop")
  }).pipe(
    Effect.timeout(STOP_GRACE),
    Effect.catchAll(() => Effect.promise(() => worker.terminate())),
    Effect.zipRight(ended(worker))
  )

export const EmbeddedPostgres = (options: {
  readonly dataDir: Option.Option<string>
  /** Must exceed the client pool size: pglite-socket refuses connections past it. */
  readonly maxConnections: number
}): Layer.Layer<Embedded, StartupError> =>
  Layer.scoped(
    Embedded,
    Effect.gen(function*() {
      const dataDir = Option.getOrUndefined(options.dataDir)
      const data = { dataDir, maxConnections: options.maxConnections, postgresqlconf: POSTGRESQL_CONF }
      if (dataDir !== undefined && !existsSync(join(dataDir, "PG_VERSION"))) {
        yield* Effect.try(() => mkdirSync(dataDir, { recursive: true }))
        yield* initialise(dataDir)
      }
      const { reply } = yield* Effect.acquireRelease(
        start(data),
        ({ worker }) => stop(worker)
      )
      if (!("url" in reply)) return yield* Effect.fail(new Error("the embedded database did not say where it serves"))
      return { url: Redacted.make(`postgres://postgres@${reply.url}/postgres?sslmode=disable`) }
    }).pipe(
      Effect.mapError((cause) =>
        new StartupError({
          component: "database",
          reason: Option.match(options.dataDir, {
            onNone: () => "the embedded database could not start",
            onSome: (dir) => `the embedded database could not open ${dir}`
          }),
          cause
        })
      )
    )
  )

/**
 * The embedded database's own thread (see Embedded.ts): PGlite behind its
 * Postgres-protocol socket server, off the server's event loop, so a
 * query's WebAssembly never holds up the delivery of events. Plain
 * JavaScript: a worker thread gets no TypeScript loader, under the tests'
 * runner as under `node --import tsx`.
 *
 * As a worker thread, workerData: { dataDir?: string, maxConnections:
 * number, postgresqlconf: string[] }. It posts { url } once serving, or
 * { error } if it cannot start; on the message "stop" it stops the socket
 * server and closes the database, then posts { stopped: true }.
 *
 * As a process of its own, `node embedded-worker.mjs <dataDir> <conf as
 * JSON>` makes a new data directory (PostgreSQL's initdb) and exits: 0 once
 * made, 1 with the reason on stderr.
 */
import { PGlite } from "@electric-sql/pglite"
import { PGLiteSocketServer } from "@electric-sql/pglite-socket"
import { isMainThread, parentPort, workerData } from "node:worker_threads"

const initialise = async () => {
  try {
    const db = new PGlite(process.argv[2], { postgresqlconf: JSON.parse(process.argv[3] ?? "[]") })
    await db.waitReady
    await db.close()
    process.exit(0)
  } catch (error) {
    process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n`)
    process.exit(1)
  }
}

const serve = async (port) => {
  const { dataDir, maxConnections, postgresqlconf } = workerData
  try {
    const db = new PGlite(dataDir, { postgresqlconf })
    await db.waitReady
    const server = new PGLiteSocketServer({ db, host: "127.0.0.1", port: 0, maxConnections })
    await server.start()
    port.on("message", (message) => {
      if (message !== "stop") return
      const stop = async () => {
        await server.stop().catch(() => undefined)
        await db.close().catch(() => undefined)
        port.postMessage({ stopped: true })
        port.close()
      }
      void stop()
    })
    port.postMessage({ url: server.getServerConn() })
  } catch (error) {
    port.postMessage({ error: error instanceof Error ? error.message : String(error) })
    port.close()
  }
}

if (isMainThread) await initialise()
else if (parentPort !== null) await serve(parentPort)

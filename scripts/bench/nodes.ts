/**
 * The deployments of the `nodes` workload: agent-chat on a fresh database
 * of a real PostgreSQL (created for each run, dropped after it), as one
 * node with the in-process broker, or as two nodes sharing that database
 * and a broker, Redis or PostgreSQL's LISTEN/NOTIFY. The load generator
 * publishes on the first node and connects every client to the second.
 *
 * Both nodes run on the server core, as the one node does: two nodes then
 * have the CPU that one has, and the ratio is what the broker costs rather
 * than what a second core gives. The load generator keeps the other core
 * (it receives up to 500k frames/s in the fan-out). PostgreSQL and Redis
 * are the machine's services and are not pinned; their CPU counts as the
 * run's own in the contention check, not in the servers' CPU figures.
 *
 * The PostgreSQL server is BENCH_DATABASE_URL, else TEST_DATABASE_URL, else
 * postgres://postgres@127.0.0.1:5432/postgres; Redis is BENCH_REDIS_URL,
 * else REDIS_URL, else TEST_REDIS_URL, else redis://127.0.0.1:6379. Without
 * PostgreSQL the workload is skipped, without Redis its Redis setup.
 */
import { Redis } from "ioredis"
import { randomBytes } from "node:crypto"
import pg from "pg"
import { type NodesSetup, withDeadline } from "./common.ts"
import type { Deployment, Processes, RunningServer } from "./processes.ts"

const PROBE_MS = 5_000

const firstSet = (...values: ReadonlyArray<string | undefined>) => values.find((v) => v !== undefined && v !== "")

/** host:port of a URL, without its credentials. */
const hostOf = (url: string) => {
  try {
    return new URL(url).host
  } catch {
    return "an invalid URL"
  }
}

const reason = (error: unknown) => error instanceof Error ? error.message.split("\n")[0] : String(error)

export class Nodes {
  readonly adminUrl = firstSet(process.env.BENCH_DATABASE_URL, process.env.TEST_DATABASE_URL) ??
    "postgres://postgres@127.0.0.1:5432/postgres"
  readonly redisUrl = firstSet(process.env.BENCH_REDIS_URL, process.env.REDIS_URL, process.env.TEST_REDIS_URL) ??
    "redis://127.0.0.1:6379"
  /** The databases created and not yet dropped. */
  private readonly databases = new Set<string>()

  constructor(private readonly processes: Processes) {}

  private async admin<A>(use: (client: pg.Client) => Promise<A>): Promise<A> {
    const client = new pg.Client({ connectionString: this.adminUrl, connectionTimeoutMillis: PROBE_MS })
    client.on("error", () => undefined)
    await client.connect()
    try {
      return await use(client)
    } finally {
      await client.end().catch(() => undefined)
    }
  }

  /** The setups that can run here, and a "skipped: …" line for each that cannot. */
  async probe(): Promise<{ readonly setups: ReadonlyArray<NodesSetup>; readonly skipped: ReadonlyArray<string> }> {
    try {
      await withDeadline(this.admin((client) => client.query("SELECT 1")), PROBE_MS, "PostgreSQL")
    } catch (error) {
      return {
        setups: [],
        skipped: [
          `skipped: no PostgreSQL at ${hostOf(this.adminUrl)} (${reason(error)}); ` +
          "set BENCH_DATABASE_URL to a server where a database can be created"
        ]
      }
    }
    const redis = new Redis(this.redisUrl, {
      lazyConnect: true,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      retryStrategy: () => null,
      connectTimeout: PROBE_MS
    })
    // The socket's error says more than the "Connection is closed." that connect() rejects with.
    let failure: unknown
    redis.on("error", (error) => failure ??= error)
    try {
      await withDeadline(redis.connect().then(() => redis.ping()), PROBE_MS, "Redis")
      return { setups: ["one node", "redis", "postgres"], skipped: [] }
    } catch (error) {
      return {
        setups: ["one node", "postgres"],
        skipped: [
          `redis skipped: no Redis at ${hostOf(this.redisUrl)} (${reason(failure ?? error)}); set BENCH_REDIS_URL`
        ]
      }
    } finally {
      redis.disconnect()
    }
  }

  private async drop(name: string) {
    await this.admin((client) => client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)).catch(() => undefined)
    this.databases.delete(name)
  }

  /** Drops the databases of runs that were interrupted. */
  dropAll(): Promise<unknown> {
    return Promise.all([...this.databases].map((name) => this.drop(name)))
  }

  /** The servers of `setup` on a fresh database, ready; `extra` adds to their environment. */
  async deploy(setup: NodesSetup, extra: Readonly<Record<string, string>> = {}): Promise<Deployment> {
    const name = `bench_${randomBytes(8).toString("hex")}`
    await this.admin((client) => client.query(`CREATE DATABASE ${name}`))
    this.databases.add(name)
    const url = new URL(this.adminUrl)
    url.pathname = `/${name}`
    const env = {
      BENCH_NODE_DATABASE_URL: url.toString(),
      BENCH_BROKER: setup === "one node" ? "memory" : setup,
      BENCH_REDIS_URL: this.redisUrl,
      ...extra
    }
    const servers: Array<RunningServer> = []
    const stop = async () => {
      await Promise.all(servers.map((server) => this.processes.stop(server)))
      await this.drop(name)
    }
    try {
      // One after the other: the first migrates the fresh database.
      servers.push(await this.processes.startServer("agent-chat", env))
      if (setup !== "one node") servers.push(await this.processes.startServer("agent-chat", env))
    } catch (error) {
      await stop()
      throw error
    }
    const publisher = servers[0]!
    const receiver = servers[1]
    return {
      databaseUrl: url.toString(),
      servers,
      ports: {
        wsPort: (receiver ?? publisher).ready.wsPort,
        controlPort: publisher.ready.controlPort,
        ...(receiver === undefined ? {} : { receiverControlPort: receiver.ready.controlPort })
      },
      // The backends serving this database (their title names it), PostgreSQL's writers, and Redis.
      services: new RegExp(
        `^postgres: .*( ${name} |walwriter|background writer|checkpointer)${setup === "redis" ? "|^redis-server" : ""}`
      ),
      stop
    }
  }
}

/**
 * A fleet of real server processes on loopback, launched as production
 * runs them (`node --import tsx src/main.ts`, APP_ENV=production): N nodes
 * on free ports sharing one fresh database on the machine's PostgreSQL and
 * one broker (BROKER=redis or postgres), each stopped with SIGTERM (it
 * drains), killed with SIGKILL, and started again on its own port. A node
 * can have its database connections go through a TcpProxy of its own, so a
 * test can cut that node alone off. Clients connect with tokens signed by
 * the fleet's shared secret. When the scope closes every process still
 * running is killed, then the database is dropped.
 *
 * A Follower is a user's client across the fleet: it follows threads, and
 * when its socket closes (1001 on a drain, or a node gone) it reconnects to
 * another live node and rejoins each thread with `after_seq` set to the
 * last seq it saw, as docs/PROTOCOL.md section 4 asks of a client.
 */
import { Effect, Redacted, type Scope } from "effect"
import pg from "pg"
import { freshPostgres } from "../../layers/Test.ts"
import { ChatClient, type CloseInfo, type EventFrame } from "./ChatClient.ts"
import { type Exited, freePort, start, type Started, within } from "./process.ts"
import { TcpProxy } from "./TcpProxy.ts"
import { sign, testSecret } from "./tokens.ts"
import { until } from "./until.ts"

export type FleetBroker = "redis" | "postgres"

export interface FleetOptions {
  readonly broker: FleetBroker
  readonly nodes: number
  /** REDIS_URL of BROKER=redis. */
  readonly redisUrl?: string
  /** More environment for every node (RUN_LEASE_MS, SHUTDOWN_GRACE_MS, LLM_*…); it wins over the fleet's. */
  readonly env?: Record<string, string>
  /** Indexes of the nodes whose database connections go through a TcpProxy of their own. */
  readonly proxied?: ReadonlyArray<number>
}

/** A line a node logged (LOG_FORMAT=json). */
export interface LogLine {
  readonly level?: string
  readonly message?: string
  readonly time?: string
  readonly [field: string]: unknown
}

const parseLogs = (output: string): Array<LogLine> =>
  output.split("\n").flatMap((line) => {
    try {
      const parsed: unknown = JSON.parse(line)
      return typeof parsed === "object" && parsed !== null ? [parsed as LogLine] : []
    } catch {
      return []
    }
  })

/** One server of the fleet: a port, an environment, and the process running on them, if any. */
export class FleetNode {
  private current: Started | undefined
  /** The output of its earlier processes. */
  private before = ""
  /** Ready, and not told to stop since. */
  private serving = false

  constructor(
    readonly name: string,
    readonly port: number,
    private readonly env: Record<string, string>,
    /** In front of its database, when the fleet was asked for one. */
    readonly proxy: TcpProxy | undefined
  ) {}

  get httpUrl() {
    return `http://127.0.0.1:${this.port}`
  }

  get wsUrl() {
    return `ws://127.0.0.1:${this.port}/ws`
  }

  /** Running, ready once, and not told to stop: where a client may go. */
  get up() {
    return this.serving
  }

  /** Starts the process and resolves once /health/ready answers 200; fails with its output if it exits first. */
  async start(timeoutMs = 30_000): Promise<void> {
    if (this.current !== undefined) throw new Error(`node ${this.name} is already running`)
    const started = start(process.execPath, ["--import", "tsx", "src/main.ts"], this.env)
    this.current = started
    let exited = false
    void started.exit.then(() => exited = true)
    await until(
      async () => {
        if (exited) throw new Error(`node ${this.name} exited while starting:\n${started.output()}`)
        return fetch(`${this.httpUrl}/health/ready`).then((r) => r.status === 200, () => false)
      },
      `node ${this.name} to be ready`,
      timeoutMs,
      50
    )
    this.serving = true
  }

  /** Sends `signal`; resolves once the process has exited and its output is complete. */
  async stop(signal: "SIGTERM" | "SIGKILL", timeoutMs = 30_000): Promise<Exited> {
    const current = this.current
    if (current === undefined) throw new Error(`node ${this.name} is not running`)
    this.serving = false
    current.child.kill(signal)
    const exited = await within(current.exited, timeoutMs, `node ${this.name} did not exit after ${signal}`)
    this.before += exited.output
    this.current = undefined
    return exited
  }

  /** SIGKILL whatever runs, for cleanup; never fails. */
  async kill(): Promise<void> {
    if (this.current !== undefined) await this.stop("SIGKILL", 10_000).catch(() => undefined)
  }

  /** Everything its processes printed, the earlier ones first. */
  output(): string {
    return this.before + (this.current?.output() ?? "")
  }

  logs(): Array<LogLine> {
    return parseLogs(this.output())
  }

  /** The lines it logged with this message. */
  logged(message: string): Array<LogLine> {
    return this.logs().filter((line) => line.message === message)
  }

  /** GET `path` with a token of `userId`. */
  async get(path: string, userId: string): Promise<Response> {
    return fetch(`${this.httpUrl}${path}`, { headers: { authorization: `Bearer ${await sign(userId)}` } })
  }
}

export interface Fleet {
  readonly nodes: ReadonlyArray<FleetNode>
  readonly databaseUrl: string
  readonly databaseName: string
  /** The nodes a client may go to now. */
  readonly up: () => ReadonlyArray<FleetNode>
  /** A client of `userId` on `node`, once it has its welcome. */
  readonly connect: (node: FleetNode, userId: string) => Promise<ChatClient>
  /** The thread's whole stored log, read over HTTP from a live node as `userId` (a member). */
  readonly stored: (threadId: string, userId?: string) => Promise<Array<EventFrame>>
  /** A query on the fleet's database, on a connection of its own. */
  readonly query: <R extends Record<string, unknown>>(
    text: string,
    values?: ReadonlyArray<unknown>
  ) => Promise<Array<R>>
}

export const connect = async (node: FleetNode, userId: string): Promise<ChatClient> => {
  const client = await ChatClient.connect(node.wsUrl, { token: await sign(userId) })
  await client.waitFor((frame) => frame.type === "welcome")
  return client
}

/** `url` with the host and port of `proxy`. */
const through = (url: string, proxy: TcpProxy) => {
  const parsed = new URL(url)
  parsed.hostname = "127.0.0.1"
  parsed.port = String(proxy.port)
  return parsed.toString()
}

/**
 * Creates a fresh database on the PostgreSQL at `adminUrl`, starts `options.nodes` server processes on
 * it (at the same time) and resolves once every one is ready.
 */
export const makeFleet = (adminUrl: string, options: FleetOptions): Effect.Effect<Fleet, never, Scope.Scope> =>
  Effect.gen(function*() {
    const { url } = yield* Effect.orDie(freshPostgres(adminUrl))
    const databaseUrl = Redacted.value(url)
    const database = new URL(databaseUrl)
    const databaseName = database.pathname.slice(1)
    const nodes: Array<FleetNode> = []
    for (let i = 0; i < options.nodes; i++) {
      const port = yield* Effect.promise(() => freePort())
      let proxy: TcpProxy | undefined
      if (options.proxied?.includes(i) === true) {
        proxy = yield* Effect.acquireRelease(
          Effect.promise(() => TcpProxy.start()),
          (p) => Effect.promise(() => p.close())
        )
        proxy.target = { host: database.hostname, port: Number(database.port || 5432) }
      }
      const env: Record<string, string> = {
        APP_ENV: "production",
        HOST: "127.0.0.1",
        PORT: String(port),
        LOG_FORMAT: "json",
        DATABASE_URL: proxy === undefined ? databaseUrl : through(databaseUrl, proxy),
        DATABASE_POOL_SIZE: "4",
        JWT_SECRET: Redacted.value(testSecret),
        LLM_PROVIDER: "builtin",
        BROKER: options.broker,
        ...(options.redisUrl === undefined ? {} : { REDIS_URL: options.redisUrl }),
        STARTUP_RETRY_ATTEMPTS: "3",
        STARTUP_RETRY_BASE_MS: "100",
        ...options.env
      }
      nodes.push(new FleetNode(String.fromCharCode(97 + i), port, env, proxy))
    }
    yield* Effect.addFinalizer(() => Effect.promise(() => Promise.all(nodes.map((node) => node.kill()))))
    yield* Effect.promise(() => Promise.all(nodes.map((node) => node.start())))

    const up = () => nodes.filter((node) => node.up)
    const stored = async (threadId: string, userId = "alice") => {
      const node = up()[0]
      if (node === undefined) throw new Error("no node is up to read the log from")
      const events: Array<EventFrame> = []
      for (;;) {
        const response = await node.get(
          `/api/threads/${threadId}/events?after_seq=${events.at(-1)?.seq ?? 0}&limit=1000`,
          userId
        )
        if (response.status !== 200) {
          throw new Error(`the log of ${threadId}: ${response.status} ${await response.text()}`)
        }
        const page: Array<EventFrame> = (await response.json()).events
        events.push(...page)
        if (page.length < 1000) return events
      }
    }
    const query = async <R extends Record<string, unknown>>(text: string, values: ReadonlyArray<unknown> = []) => {
      const client = new pg.Client({ connectionString: databaseUrl })
      client.on("error", () => undefined)
      await client.connect()
      try {
        return (await client.query<R>(text, [...values])).rows
      } finally {
        await client.end().catch(() => undefined)
      }
    }
    return { nodes, databaseUrl, databaseName, up, connect, stored, query }
  })

/** A user's client across the fleet, following threads from node to node. */
export class Follower {
  client: ChatClient | undefined
  node: FleetNode | undefined
  /** Every close it saw, with the node it was on. */
  readonly closes: Array<CloseInfo & { readonly node: string }> = []
  private readonly threads = new Set<string>()
  /** The events of its earlier connections, by thread. */
  private readonly past = new Map<string, Array<EventFrame>>()
  private moving: Promise<void> = Promise.resolve()
  private failure: unknown
  private stopped = false

  constructor(private readonly fleet: Fleet, readonly userId: string) {}

  /** What it received of the thread, over all its connections, in arrival order. */
  events(threadId: string): Array<EventFrame> {
    return [...this.past.get(threadId) ?? [], ...this.client?.events(threadId) ?? []]
  }

  lastSeq(threadId: string): number {
    return this.events(threadId).at(-1)?.seq ?? 0
  }

  /** Connects to `node` and joins every followed thread from the last seq it saw. */
  async attach(node: FleetNode): Promise<void> {
    const client = await connect(node, this.userId)
    this.client = client
    this.node = node
    client.ws.once("close", (code: number, reason: Buffer) => {
      this.closes.push({ node: node.name, code, reason: reason.toString() })
      // A client given up while attaching is not followed.
      if (this.stopped || this.client !== client) return
      this.moving = this.move(node, client).catch((error: unknown) => {
        this.failure = error
      })
    })
    for (const threadId of this.threads) {
      await client.request({ type: "join_thread", thread_id: threadId, after_seq: this.lastSeq(threadId) })
    }
  }

  /** Follows the thread from its first event. */
  async follow(threadId: string): Promise<void> {
    this.threads.add(threadId)
    await this.client!.request({ type: "join_thread", thread_id: threadId, after_seq: 0 })
  }

  /** Resolves once it is connected again after its last close; fails if it could not reconnect. */
  async settled(): Promise<void> {
    await this.moving
    if (this.failure !== undefined) throw this.failure
  }

  close(): void {
    this.stopped = true
    this.client?.ws.terminate()
  }

  private async move(from: FleetNode, closed: ChatClient): Promise<void> {
    for (const threadId of this.threads) {
      this.past.set(threadId, [...this.past.get(threadId) ?? [], ...closed.events(threadId)])
    }
    this.client = undefined
    await until(
      async () => {
        for (const node of this.fleet.up().filter((n) => n !== from)) {
          try {
            await this.attach(node)
            return true
          } catch {
            const failed = this.client
            this.client = undefined
            failed?.ws.terminate()
          }
        }
        return false
      },
      `${this.userId} to reconnect to a live node`,
      20_000,
      100
    )
  }
}

/**
 * A fake language-model server on loopback: each request to a path takes
 * the next scripted answer for that path (a status with a body, or an SSE
 * stream written in pieces cut at any byte), and every request is recorded
 * with its body and whether the client closed it before the answer ended.
 * The fakes of the Chat Completions, Responses and Messages APIs are
 * scripts for this server.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http"

export type Answer =
  /** A whole answer at once. */
  | {
    readonly kind: "json"
    readonly status?: number
    readonly body: unknown
    readonly headers?: Record<string, string>
  }
  /**
   * An SSE stream. Each `event` is a JSON value written as `data: …` (or a raw string, written as is,
   * e.g. "data: [DONE]"); the whole stream is cut into pieces of `split` bytes (default: whole frames),
   * with `delayMs` between pieces. `hang` leaves it open after the last piece; `cut` destroys the
   * socket after it.
   */
  | {
    readonly kind: "sse"
    readonly events: ReadonlyArray<unknown>
    readonly eventNames?: ReadonlyArray<string | undefined>
    readonly split?: number | ReadonlyArray<number>
    readonly delayMs?: number
    readonly hang?: boolean
    readonly cut?: boolean
    readonly status?: number
  }
  /** Accepts the request and never answers. */
  | { readonly kind: "silent" }

export interface RecordedRequest {
  readonly method: string
  readonly path: string
  /** The path with its query string. */
  readonly url: string
  readonly headers: IncomingMessage["headers"]
  readonly body: any
  /** Set when the client closed the connection before the answer was over. */
  aborted: boolean
  /** Set once the answer was written to its end. */
  finished: boolean
}

const sseText = (events: ReadonlyArray<unknown>, names?: ReadonlyArray<string | undefined>): string =>
  events.map((event, i) => {
    const data = typeof event === "string" ? event : `data: ${JSON.stringify(event)}`
    const name = names?.[i]
    return `${name === undefined ? "" : `event: ${name}\n`}${data}\n\n`
  }).join("")

const pieces = (bytes: Buffer, split: number | ReadonlyArray<number> | undefined): Array<Buffer> => {
  if (split === undefined) return [bytes]
  const sizes = typeof split === "number" ? [split] : split
  const out: Array<Buffer> = []
  let at = 0
  for (let i = 0; at < bytes.length; i++) {
    const size = Math.max(1, sizes[i % sizes.length] ?? 1)
    out.push(bytes.subarray(at, at + size))
    at += size
  }
  return out
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

export class FakeLlmServer {
  readonly requests: Array<RecordedRequest> = []
  private readonly scripts = new Map<string, Array<Answer>>()
  /** Answers for a path once its script is used up. */
  private readonly fallbacks = new Map<string, Answer>()
  private readonly open = new Set<ServerResponse>()

  private constructor(private readonly server: Server, readonly port: number) {}

  static async start(): Promise<FakeLlmServer> {
    const server = createServer()
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject)
      server.listen(0, "127.0.0.1", () => resolve())
    })
    const address = server.address()
    const fake = new FakeLlmServer(server, typeof address === "object" && address !== null ? address.port : 0)
    server.on("request", (req, res) => void fake.handle(req, res))
    return fake
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`
  }

  /** Queues answers for `path` (e.g. "/v1/chat/completions"), taken one per request. */
  script(path: string, ...answers: ReadonlyArray<Answer>): this {
    this.scripts.set(path, [...(this.scripts.get(path) ?? []), ...answers])
    return this
  }

  /** What `path` answers once its queue is empty. */
  always(path: string, answer: Answer): this {
    this.fallbacks.set(path, answer)
    return this
  }

  requestsTo(path: string): Array<RecordedRequest> {
    return this.requests.filter((r) => r.path === path)
  }

  reset(): void {
    this.requests.length = 0
    this.scripts.clear()
    this.fallbacks.clear()
  }

  async close(): Promise<void> {
    for (const res of this.open) res.destroy()
    this.server.closeAllConnections()
    await new Promise<void>((resolve) => this.server.close(() => resolve()))
  }

  private async handle(req: IncomingMessage, res: ServerResponse) {
    const chunks: Array<Buffer> = []
    for await (const chunk of req) chunks.push(chunk as Buffer)
    const text = Buffer.concat(chunks).toString("utf8")
    let body: unknown = text
    try {
      body = text.length > 0 ? JSON.parse(text) : undefined
    } catch {
      // Recorded as text.
    }
    const path = (req.url ?? "/").split("?")[0]!
    const recorded: RecordedRequest = {
      method: req.method ?? "GET",
      path,
      url: req.url ?? "/",
      headers: req.headers,
      body,
      aborted: false,
      finished: false
    }
    this.requests.push(recorded)
    this.open.add(res)
    res.on("close", () => {
      this.open.delete(res)
      if (!recorded.finished) recorded.aborted = true
    })
    const answer = this.scripts.get(path)?.shift() ?? this.fallbacks.get(path)
    if (answer === undefined) {
      res.writeHead(404, { "content-type": "application/json" })
      res.end(JSON.stringify({ error: { message: `no scripted answer for ${req.method} ${path}` } }))
      recorded.finished = true
      return
    }
    switch (answer.kind) {
      case "silent":
        return
      case "json": {
        res.writeHead(answer.status ?? 200, { "content-type": "application/json", ...answer.headers })
        res.end(JSON.stringify(answer.body))
        recorded.finished = true
        return
      }
      case "sse": {
        res.writeHead(answer.status ?? 200, {
          "content-type": "text/event-stream",
          "cache-control": "no-cache",
          connection: "keep-alive"
        })
        res.flushHeaders()
        for (const piece of pieces(Buffer.from(sseText(answer.events, answer.eventNames)), answer.split)) {
          if (recorded.aborted) return
          res.write(piece)
          if (answer.delayMs !== undefined && answer.delayMs > 0) await sleep(answer.delayMs)
          else await new Promise((resolve) => setImmediate(resolve))
        }
        if (answer.cut === true) {
          res.socket?.destroy()
          return
        }
        if (answer.hang === true) return
        recorded.finished = true
        res.end()
      }
    }
  }
}

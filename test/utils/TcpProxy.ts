/**
 * A TCP proxy on loopback between the server under test and its database,
 * so a test can cut the connection (every open socket reset, new ones
 * refused) and restore it, without touching the database server itself.
 */
import { createServer, type Server, Socket } from "node:net"

interface Trap {
  readonly after: Buffer
  readonly on: Buffer
  readonly forward: boolean
  readonly sprung: () => void
}

export class TcpProxy {
  /** Where connections go; set once the database's address is known. */
  target: { host: string; port: number } | undefined
  private refusing = false
  private refuseNext = 0
  /** Connections refused so far. */
  refused = 0
  private readonly open = new Set<Socket>()
  private trap: Trap | undefined

  private constructor(private readonly server: Server, readonly port: number) {
    server.on("connection", (client) => this.accept(client))
  }

  static start(): Promise<TcpProxy> {
    const server = createServer()
    return new Promise((resolve, reject) => {
      server.once("error", reject)
      server.listen(0, "127.0.0.1", () => {
        const address = server.address()
        resolve(new TcpProxy(server, typeof address === "object" && address !== null ? address.port : 0))
      })
    })
  }

  private accept(client: Socket) {
    if (this.refusing || this.refuseNext > 0 || this.target === undefined) {
      if (this.refuseNext > 0) this.refuseNext--
      this.refused++
      return client.resetAndDestroy()
    }
    const upstream = new Socket()
    this.open.add(client).add(upstream)
    const end = () => {
      client.destroy()
      upstream.destroy()
      this.open.delete(client)
      this.open.delete(upstream)
    }
    client.on("error", end).on("close", end)
    upstream.on("error", end).on("close", end)
    upstream.connect(this.target.port, this.target.host, () => {
      let armed = false
      // Client to server by hand, so a trap can see each message before the database does.
      client.on("data", (chunk: Buffer) => {
        const trap = this.trap
        if (trap !== undefined) {
          if (chunk.includes(trap.after)) armed = true
          if (armed && chunk.includes(trap.on)) {
            this.trap = undefined
            if (trap.forward) upstream.write(chunk, () => this.cut())
            else this.cut()
            trap.sprung()
            return
          }
        }
        upstream.write(chunk)
      })
      upstream.pipe(client)
    })
  }

  /** The database is gone: open connections are reset, new ones refused. */
  cut() {
    this.refusing = true
    for (const socket of this.open) socket.resetAndDestroy()
    this.open.clear()
  }

  /** A blip: open connections are reset and the next `attempts` refused; later ones get through. */
  blip(attempts: number) {
    this.refuseNext = attempts
    for (const socket of this.open) socket.resetAndDestroy()
    this.open.clear()
  }

  /**
   * Cuts the database off (as `cut`) when a connection that has sent `after` (a query text or a
   * parameter) then sends `on` (say, the COMMIT of that transaction): with `forward` that last
   * message reaches the database first, so it may commit while its answer is lost. Resolves when sprung.
   */
  cutWhen(after: string, on: string, forward: boolean): Promise<void> {
    return new Promise((sprung) => {
      this.trap = { after: Buffer.from(after), on: Buffer.from(on), forward, sprung }
    })
  }

  /** The database is back. */
  restore() {
    this.refusing = false
  }

  /** How many connections are open through the proxy (each counted on both sides). */
  get connections() {
    return this.open.size / 2
  }

  close() {
    this.cut()
    return new Promise<void>((resolve) => this.server.close(() => resolve()))
  }
}

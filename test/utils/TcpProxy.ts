/**
 * A TCP proxy on loopback between the server under test and its database,
 * so a test can cut the connection (every open socket reset, new ones
 * refused) and restore it, without touching the database server itself.
 */
import { createServer, type Server, Socket } from "node:net"

export class TcpProxy {
  /** Where connections go; set once the database's address is known. */
  target: { host: string; port: number } | undefined
  private refusing = false
  private refuseNext = 0
  /** Connections refused so far. */
  refused = 0
  private readonly open = new Set<Socket>()

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
      client.pipe(upstream)
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

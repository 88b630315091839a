/**
 * Signals reach the server however it was launched: `npm start` (the npm
 * process alone, or its whole process group, as a terminal or a container
 * runtime sends them) and the documented single-process production command.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { mkdtempSync, rmSync } from "node:fs"
import type { Socket } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { ChatClient } from "./utils/ChatClient.ts"
import {
  freePort,
  groupAlive,
  killGroup,
  type Started,
  startMain,
  startNpm,
  waitForStatus,
  waitGroupGone,
  within
} from "./utils/process.ts"

type Launch = (env: Record<string, string>, options: { readonly detached: true }) => Started

interface Running {
  /** The launched process's id, which is also its process group's. */
  readonly pgid: number
  readonly server: Started
  readonly client: ChatClient
}

/**
 * Launches in a process group of its own, connects a client, lets `signal` send what it tests, and
 * reports what followed: how the launched process exited, what the client and the log saw, and
 * whether anything of the group is left or still answers on the port.
 */
const afterSignal = async (launch: Launch, signal: (running: Running) => unknown) => {
  const dataDir = mkdtempSync(join(tmpdir(), "agent-chat-signal-"))
  const port = await freePort()
  const server = launch({
    APP_ENV: "development",
    HOST: "127.0.0.1",
    PORT: String(port),
    DATA_DIR: dataDir,
    LOG_FORMAT: "json"
  }, { detached: true })
  const pgid = server.child.pid!
  let client: ChatClient | undefined
  try {
    await waitForStatus(`http://127.0.0.1:${port}/health/ready`, 200, 60_000)
    const { token } = await (await fetch(`http://127.0.0.1:${port}/api/dev/token`, {
      method: "POST",
      body: JSON.stringify({ user_id: "sig" })
    })).json()
    client = await ChatClient.connect(`ws://127.0.0.1:${port}/ws`, { token })
    await client.waitFor((frame) => frame.type === "welcome")
    const closed = client.waitClose(30_000).then((info) => info.code, () => "still open")
    await signal({ pgid, server, client })
    const [exit, close] = await Promise.all([
      within(server.exit, 30_000, "the launched process did not exit"),
      closed
    ])
    const left = await waitGroupGone(pgid, 10_000).then(() => false, () => groupAlive(pgid))
    const portAfter = await fetch(`http://127.0.0.1:${port}/health/live`).then(() => "answers", () => "closed")
    const messages = left ? [] : logMessages((await within(server.exited, 5_000, "output not closed")).output)
    return { code: exit.code, signal: exit.signal, close, left, port: portAfter, messages }
  } finally {
    client?.ws.terminate()
    killGroup(pgid)
    // The embedded database may still be writing its directory until the kill lands.
    await waitGroupGone(pgid, 5_000).catch(() => {})
    rmSync(dataDir, { recursive: true, force: true })
  }
}

const untilLogged = async (server: Started, message: string, timeoutMs: number) => {
  const deadline = Date.now() + timeoutMs
  while (!logMessages(server.output()).includes(message)) {
    if (Date.now() >= deadline) throw new Error(`no "${message}" logged within ${timeoutMs} ms`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

const logMessages = (output: string) =>
  output.split("\n").flatMap((line) => {
    try {
      return [String(JSON.parse(line).message)]
    } catch {
      return [] // npm's banner
    }
  })

const drained = { code: 0, signal: null, close: 1001, left: false, port: "closed" }

const expectDrained = (outcome: Awaited<ReturnType<typeof afterSignal>>) => {
  const { messages, ...rest } = outcome
  expect(rest).toEqual(drained)
  const draining = messages.indexOf("draining")
  expect(draining).toBeGreaterThanOrEqual(0)
  expect(messages.indexOf("connections closed; stopping")).toBeGreaterThan(draining)
}

describe("signals", () => {
  it.live(
    "SIGTERM to the npm start process drains the server and exits 0, leaving no process",
    () =>
      Effect.promise(async () => {
        expectDrained(await afterSignal(startNpm, ({ pgid }) => process.kill(pgid, "SIGTERM")))
      }),
    60_000
  )

  // The group signal reaches npm and the server at once, and npm forwards its copy: the server gets two.
  it.live(
    "SIGTERM to the process group of npm start drains and exits 0, leaving no process",
    () =>
      Effect.promise(async () => {
        expectDrained(await afterSignal(startNpm, ({ pgid }) => process.kill(-pgid, "SIGTERM")))
      }),
    60_000
  )

  it.live(
    "SIGINT to the process group of npm start (Ctrl-C in a terminal) drains and exits 0",
    () =>
      Effect.promise(async () => {
        expectDrained(await afterSignal(startNpm, ({ pgid }) => process.kill(-pgid, "SIGINT")))
      }),
    60_000
  )

  it.live(
    "the production command drains on SIGTERM, and signals repeated during the drain do not cut it short",
    () =>
      Effect.promise(async () => {
        expectDrained(
          await afterSignal(startMain, async ({ client, pgid, server }) => {
            // A client that does not answer the close handshake holds the drain open (up to the hub's
            // bound), so the repeats surely land after the first signal was handled, mid-drain.
            ;(client.ws as unknown as { readonly _socket: Socket })._socket.pause()
            process.kill(pgid, "SIGTERM")
            await untilLogged(server, "draining", 10_000)
            process.kill(pgid, "SIGTERM")
            process.kill(pgid, "SIGINT")
            ;(client.ws as unknown as { readonly _socket: Socket })._socket.resume()
          })
        )
      }),
    60_000
  )
})

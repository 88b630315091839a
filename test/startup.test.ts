import { describe, expect, it } from "@effect/vitest"
import { Context, Duration, Effect, Exit, Fiber, Layer, Redacted, TestClock, TestServices } from "effect"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { startupRetrySchedule } from "../src/config/AppConfig.ts"
import * as Database from "../src/database/Database.ts"
import { devClient, freePort, startMain, waitForStatus } from "./utils/process.ts"

class Dependency extends Context.Tag("test/Dependency")<Dependency, true>() {}

describe("startup retry policy", () => {
  it.effect("retries a failing dependency with growing delays, a bounded number of times", () =>
    Effect.gen(function*() {
      const attemptsAt: Array<number> = []
      const failing = Layer.effect(
        Dependency,
        Effect.flatMap(TestClock.currentTimeMillis, (now) => {
          attemptsAt.push(now)
          return Effect.fail("ECONNREFUSED")
        })
      )
      const policy = { attempts: 5, baseDelay: Duration.millis(100), maxElapsed: Duration.minutes(10) }
      const fiber = yield* Layer.build(failing.pipe(Layer.retry(startupRetrySchedule(policy)))).pipe(
        Effect.scoped,
        Effect.fork
      )
      yield* TestClock.adjust(Duration.minutes(1))
      const exit = yield* Fiber.await(fiber)
      expect(Exit.isFailure(exit)).toBe(true)
      expect(attemptsAt).toHaveLength(5)
      const delays = attemptsAt.slice(1).map((at, i) => at - attemptsAt[i]!)
      // Exponential with jitter: each delay is 0.8–1.2 × 100 ms × 2^n.
      delays.forEach((delay, n) => {
        expect(delay).toBeGreaterThanOrEqual(80 * 2 ** n)
        expect(delay).toBeLessThanOrEqual(120 * 2 ** n)
      })
    }))

  it.effect("gives up when the total time bound is reached, whatever the attempts left", () =>
    Effect.gen(function*() {
      let attempts = 0
      const failing = Layer.effect(Dependency, Effect.suspend(() => (attempts++, Effect.fail("down"))))
      const policy = { attempts: 1000, baseDelay: Duration.millis(100), maxElapsed: Duration.seconds(2) }
      const fiber = yield* Layer.build(failing.pipe(Layer.retry(startupRetrySchedule(policy)))).pipe(
        Effect.scoped,
        Effect.fork
      )
      yield* TestClock.adjust(Duration.minutes(10))
      expect(Exit.isFailure(yield* Fiber.await(fiber))).toBe(true)
      expect(attempts).toBeGreaterThanOrEqual(3)
      expect(attempts).toBeLessThanOrEqual(6)
    }))

  it.effect("names the database, its address and the attempts when it stays unreachable", () =>
    Effect.gen(function*() {
      const layer = Database.layerUrl({
        url: Redacted.make("postgres://postgres@127.0.0.1:1/agent_chat"),
        poolSize: 1,
        retry: { attempts: 3, baseDelay: Duration.millis(100), maxElapsed: Duration.minutes(1) }
      })
      const fiber = yield* Layer.build(layer).pipe(Effect.scoped, Effect.flip, Effect.fork)
      // Connection attempts are real I/O; only the waits between them are on the TestClock.
      while (fiber.unsafePoll() === null) {
        yield* TestClock.adjust(Duration.millis(100))
        yield* TestServices.provideLive(Effect.sleep(Duration.millis(5)))
      }
      const error = yield* Fiber.join(fiber)
      expect(error._tag).toBe("StartupError")
      expect(error.message).toMatch(
        /^Database failed to start: unreachable at 127\.0\.0\.1:1\/agent_chat after 3 attempts: .*ECONNREFUSED/
      )
    }))
})

describe("the server process", () => {
  it.live("exits non-zero, naming the database, when the database never answers", () =>
    Effect.promise(async () => {
      const port = await freePort()
      const server = startMain({
        APP_ENV: "production",
        PORT: String(port),
        DATABASE_URL: "postgres://postgres@127.0.0.1:1/agent_chat",
        JWT_SECRET: "a-production-secret-of-enough-length",
        LLM_PROVIDER: "builtin",
        STARTUP_RETRY_ATTEMPTS: "3",
        STARTUP_RETRY_BASE_MS: "50",
        STARTUP_RETRY_MAX_MS: "5000"
      })
      const exited = await server.exited
      expect(exited.code).not.toBe(0)
      expect(exited.output).toMatch(
        /Database failed to start: unreachable at 127\.0\.0\.1:1\/agent_chat after 3 attempts/
      )
      // The port was never opened.
      expect(await fetch(`http://127.0.0.1:${port}/health/live`).then(() => "open", () => "closed")).toBe("closed")
    }), 60_000)

  it.live(
    "exits non-zero, naming Redis and its address, when BROKER=redis finds no Redis",
    () =>
      Effect.promise(async () => {
        const dataDir = mkdtempSync(join(tmpdir(), "agent-chat-redis-"))
        try {
          const port = await freePort()
          const exited = await startMain({
            PORT: String(port),
            HOST: "127.0.0.1",
            DATA_DIR: dataDir,
            BROKER: "redis",
            REDIS_URL: "redis://:a-redis-password@127.0.0.1:1",
            STARTUP_RETRY_ATTEMPTS: "2",
            STARTUP_RETRY_BASE_MS: "50"
          }).exited
          expect(exited.code).not.toBe(0)
          expect(exited.output).toMatch(/Broker failed to start: Redis unreachable at 127\.0\.0\.1:1 after 2 attempts/)
          expect(exited.output).not.toContain("a-redis-password")
          expect(await fetch(`http://127.0.0.1:${port}/health/live`).then(() => "open", () => "closed")).toBe("closed")
        } finally {
          rmSync(dataDir, { recursive: true, force: true })
        }
      }),
    60_000
  )

  it.live(
    "refuses to start in production without its required settings, naming each",
    () =>
      Effect.promise(async () => {
        const exited = await startMain({ APP_ENV: "production", PORT: String(await freePort()) }).exited
        expect(exited.code).not.toBe(0)
        expect(exited.output).toMatch(/APP_ENV=production requires DATABASE_URL and JWT_SECRET/)
        // Never a silent fallback to the built-in agent.
        expect(exited.output).toMatch(/and LLM_PROVIDER \(openai-chat, openai-responses, anthropic, or builtin/)
      }),
    60_000
  )

  it.live(
    "refuses to start in production with an HS256 secret shorter than 32 bytes, naming JWT_SECRET",
    () =>
      Effect.promise(async () => {
        const port = await freePort()
        const exited = await startMain({
          APP_ENV: "production",
          PORT: String(port),
          DATABASE_URL: "postgres://postgres@127.0.0.1:1/agent_chat",
          JWT_SECRET: "abc",
          LLM_PROVIDER: "builtin"
        }).exited
        expect(exited.code).not.toBe(0)
        expect(exited.output).toMatch(
          /Config failed to start: JWT_SECRET must be at least 32 bytes \(RFC 7518 section 3\.2\); it has 3/
        )
        expect(await fetch(`http://127.0.0.1:${port}/health/live`).then(() => "open", () => "closed")).toBe("closed")
      }),
    60_000
  )

  it.live(
    "starts in development with no service, serves a chat, and on SIGTERM ends runs, closes 1001, exits 0",
    () =>
      Effect.promise(async () => {
        const dataDir = mkdtempSync(join(tmpdir(), "agent-chat-dev-"))
        try {
          const port = await freePort()
          const server = startMain({
            PORT: String(port),
            HOST: "127.0.0.1",
            DATA_DIR: dataDir,
            SHUTDOWN_GRACE_MS: "0",
            LOG_FORMAT: "json",
            LOG_LEVEL: "debug"
          })
          await waitForStatus(`http://127.0.0.1:${port}/health/ready`, 200, 60_000)
          const { client, token } = await devClient(port, "alice")
          const { thread_id } = await client.request({ type: "create_thread" })
          const sent = await client.request({ type: "send_message", thread_id, content: "what is 2 ^ 10" })
          const terminal = await client.waitRunEnd(sent.run_id)
          expect(terminal.data.response).toContain("1024")

          // SIGTERM right behind a message: with no grace, its run is cancelled or has just finished;
          // either way the client gets its terminal event before 1001, and the log keeps it.
          const late = await client.request({ type: "send_message", thread_id, content: "what is 3 ^ 4" })
          server.child.kill("SIGTERM")
          const [exited, close, lateEnd] = await Promise.all([
            server.exited,
            client.waitClose(),
            client.waitRunEnd(late.run_id)
          ])
          expect(["agent_completed", "agent_error"]).toContain(lateEnd.event_type)
          expect(close.code).toBe(1001)
          expect(exited.code).toBe(0)

          // Every line of output is a JSON log with its context: the component, the connection, the run.
          const logs = exited.output.split("\n").filter((line) => line.length > 0).map((line) => JSON.parse(line))
          for (const log of logs) expect(Object.keys(log).slice(0, 3)).toEqual(["level", "time", "message"])
          expect(logs).toContainEqual(expect.objectContaining({ message: "database up", component: "database" }))
          expect(logs).toContainEqual(
            expect.objectContaining({
              message: "run ended",
              component: "supervisor",
              thread_id,
              run_id: sent.run_id,
              user_id: "alice",
              status: "completed"
            })
          )
          expect(logs).toContainEqual(
            expect.objectContaining({ message: "connection closed", component: "websocket", user_id: "alice" })
          )

          const again = startMain({ PORT: String(port), HOST: "127.0.0.1", DATA_DIR: dataDir })
          try {
            await waitForStatus(`http://127.0.0.1:${port}/health/ready`, 200, 60_000)
            const stored = await (await fetch(`http://127.0.0.1:${port}/api/threads/${thread_id}/events`, {
              headers: { authorization: `Bearer ${token}` }
            })).json()
            const ends = stored.events.filter((e: { run_id?: string; event_type: string }) =>
              e.run_id === late.run_id && (e.event_type === "agent_completed" || e.event_type === "agent_error")
            )
            expect(ends).toEqual([expect.objectContaining({ event_type: lateEnd.event_type, seq: lateEnd.seq })])
          } finally {
            again.child.kill("SIGTERM")
            await again.exited
          }
        } finally {
          rmSync(dataDir, { recursive: true, force: true })
        }
      }),
    120_000
  )
})

/**
 * The command line (`bin/agent-chat.mjs`), as a real process against a
 * real server: a one-shot `--message` printing the run live with an exit
 * code from its outcome, `--json`, an interactive chat on standard input
 * whose first Ctrl-C (SIGINT) cancels the run and second quits, the
 * `threads` and `history` listings, and the errors it explains.
 */
import { expect, it } from "@effect/vitest"
import { Context, Effect, Layer } from "effect"
import { failingModel, Gate, gatedModel } from "../utils/Models.ts"
import { start, within } from "../utils/process.ts"
import { TestServer, type TestServerOptions } from "../utils/TestServer.ts"
import { sign } from "../utils/tokens.ts"
import { until } from "../utils/until.ts"

const server = (options: TestServerOptions = {}) =>
  Effect.map(Layer.build(TestServer.layer(options)), Context.get(TestServer))

const cli = (args: ReadonlyArray<string>, env: Record<string, string> = {}) =>
  start(process.execPath, ["bin/agent-chat.mjs", ...args], env, { stdin: true })

/** Runs the command to its end: its exit code and output. */
const run = (args: ReadonlyArray<string>, env?: Record<string, string>) =>
  Effect.promise(async () => {
    const done = await within(cli(args, env).exited, 30_000, `agent-chat ${args.join(" ")} did not exit`)
    return { code: done.code, output: done.output }
  })

it.scopedLive(
  "--message prints the run live (thinking, the tool with input, output and time, the answer), exit 0",
  () =>
    Effect.gen(function*() {
      const chat = yield* server()
      const { code, output } = yield* run([
        "chat",
        "--url",
        chat.wsUrl,
        "--user",
        "alice",
        "--message",
        "what is 12 * (3 + 4)?"
      ])
      expect(code).toBe(0)
      expect(output).toContain("thinking:")
      expect(output).toMatch(/→ calculator \{"expression":"12 \* \(3 \+ 4\)"\}/)
      expect(output).toMatch(/← calculator \(\d+ ms\) \{.*"result":84/)
      expect(output).toMatch(/84/)
      expect(output).toMatch(/\(completed in \d+ ms\)/)
    }),
  60_000
)

it.scopedLive(
  "--json prints the run's events raw, one per line, in seq order; threads and history list them",
  () =>
    Effect.gen(function*() {
      const chat = yield* server()
      const base = ["--url", chat.wsUrl, "--user", "bob"]
      const { code, output } = yield* run(["chat", ...base, "--json", "--message", "what is 2 + 2?"])
      expect(code).toBe(0)
      const events = output.trim().split("\n").map((line) => JSON.parse(line))
      expect(events[0]).toMatchObject({ type: "event", event_type: "message_created" })
      expect(events.at(-1)).toMatchObject({ event_type: "agent_completed" })
      expect(events.map((e) => e.seq)).toEqual(events.map((_, i) => i + 1))
      const threadId = events[0].thread_id as string

      const listed = yield* run(["threads", ...base, "--json"])
      expect(listed.code).toBe(0)
      expect(listed.output.trim().split("\n").map((line) => JSON.parse(line).thread_id)).toEqual([threadId])
      const history = yield* run(["history", threadId, ...base, "--json"])
      expect(history.output.trim().split("\n").map((line) => JSON.parse(line).event_id)).toEqual(
        events.map((e) => e.event_id)
      )
      const readable = yield* run(["history", threadId, ...base])
      expect(readable.code).toBe(0)
      expect(readable.output).toMatch(/\(completed in \d+ ms\)/)
      // AGENT_CHAT_URL and AGENT_CHAT_TOKEN stand for --url and --token.
      const token = yield* Effect.promise(() => sign("bob"))
      const fromEnv = yield* run(["threads"], { AGENT_CHAT_URL: chat.wsUrl, AGENT_CHAT_TOKEN: token })
      expect(fromEnv.code).toBe(0)
      expect(fromEnv.output).toContain(threadId)
    }),
  60_000
)

it.scopedLive(
  "interactive: lines are sent; the first Ctrl-C cancels the run, the second quits with 130",
  () =>
    Effect.gen(function*() {
      const gate = new Gate()
      const chat = yield* server({ model: gatedModel(gate, 3) })
      const child = cli(["chat", "--url", chat.wsUrl, "--user", "carol"])
      yield* Effect.addFinalizer(() => Effect.sync(() => child.child.kill("SIGKILL")))
      yield* Effect.promise(() => until(async () => child.output().includes("thread "), "the chat to start"))
      child.child.stdin!.write("take your time\n")
      yield* Effect.promise(() => until(async () => child.output().includes("thinking: thinking it over"), "the run"))
      child.child.kill("SIGINT")
      yield* Effect.promise(() => until(async () => /✗ cancelled/.test(child.output()), "the run cancelled"))
      expect(child.output()).toContain("cancelling…")
      // Still chatting: the next message runs.
      gate.openFully()
      child.child.stdin!.write("again\n")
      yield* Effect.promise(() => until(async () => /completed in/.test(child.output()), "the second run"))
      child.child.kill("SIGINT")
      const exit = yield* Effect.promise(() => within(child.exit, 10_000, "agent-chat did not quit"))
      expect(exit.code).toBe(130)
    }),
  60_000
)

it.scopedLive(
  "exit codes: a cancelled one-shot 130, bad usage 2, no server 3, no dev tokens 4",
  () =>
    Effect.gen(function*() {
      const gate = new Gate()
      const chat = yield* server({ model: gatedModel(gate, 3) })
      const oneShot = cli(["chat", "--url", chat.wsUrl, "--user", "dave", "--message", "slowly"])
      yield* Effect.promise(() => until(async () => oneShot.output().includes("thinking"), "the one-shot's run"))
      oneShot.child.kill("SIGINT")
      expect((yield* Effect.promise(() => within(oneShot.exited, 15_000, "no exit"))).code).toBe(130)

      const usage = yield* run(["chat", "--bogus"])
      expect(usage.code).toBe(2)
      expect(usage.output).toContain("Usage:")
      const noToken = yield* run(["threads", "--url", chat.wsUrl])
      expect(noToken.code).toBe(2)
      expect(noToken.output).toContain("--token")
      const nobody = yield* run(["threads", "--url", "ws://127.0.0.1:1/ws", "--user", "erin"])
      expect(nobody.code).toBe(3)
      expect(nobody.output).toContain("cannot reach http://127.0.0.1:1")

      const production = yield* server({ devTokens: false })
      const refused = yield* run(["threads", "--url", production.wsUrl, "--user", "erin"])
      expect(refused.code).toBe(4)
      expect(refused.output).toContain("no dev tokens")
      const badToken = yield* run(["threads", "--url", production.wsUrl, "--token", "not-a-jwt"])
      expect(badToken.code).toBe(4)
      expect(badToken.output).toContain("HTTP 401")
    }),
  60_000
)

it.scopedLive("a failed run ends the one-shot with exit 1, the error printed", () =>
  Effect.gen(function*() {
    const chat = yield* server({ model: failingModel })
    const { code, output } = yield* run(["chat", "--url", chat.wsUrl, "--user", "fay", "--message", "break"])
    expect(code).toBe(1)
    expect(output).toMatch(/✗ \w+:/)
  }), 60_000)

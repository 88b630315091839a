import { describe, expect, it } from "@effect/vitest"
import { Context, Duration, Effect, Exit, Fiber, Layer, Scope } from "effect"
import type { Tool } from "../../src/runs/Tool.ts"
import { ChatClient, UpgradeRefused } from "../utils/ChatClient.ts"
import { expectRunShape } from "../utils/invariants.ts"
import { Gate, gatedModel, toolCallingModel } from "../utils/Models.ts"
import { TcpProxy } from "../utils/TcpProxy.ts"
import { TestServer } from "../utils/TestServer.ts"
import { sign } from "../utils/tokens.ts"
import { until } from "../utils/until.ts"

/** Starts a server in a scope of its own, so the test decides when it shuts down. */
const start = (gate: Gate, grace: Duration.Duration, databaseProxy?: TcpProxy) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const context = yield* Layer.buildWithScope(
      TestServer.layer({ model: gatedModel(gate, 3), config: { shutdownGrace: grace }, databaseProxy }),
      scope
    )
    return { server: Context.get(context, TestServer), scope }
  })

describe("graceful shutdown", () => {
  it.live("drains: 503 for new upgrades, active runs finish within the grace period, then 1001", () =>
    Effect.gen(function*() {
      const gate = new Gate()
      const { scope, server } = yield* start(gate, Duration.seconds(20))
      const alice = yield* Effect.promise(async () => ChatClient.connect(server.wsUrl, { token: await sign("alice") }))
      const { thread_id } = yield* Effect.promise(() => alice.request({ type: "create_thread" }))
      const sent = yield* Effect.promise(() => alice.request({ type: "send_message", thread_id, content: "go" }))
      yield* Effect.promise(() => alice.waitFor((f) => f.type === "event" && f.event_type === "agent_thinking"))

      const shutdown = yield* Effect.fork(Scope.close(scope, Exit.void))
      yield* Effect.promise(() =>
        until(async () => (await fetch(`${server.httpUrl}/health/ready`)).status === 503, "draining")
      )
      const ready = yield* Effect.promise(async () => (await fetch(`${server.httpUrl}/health/ready`)).json())
      expect(ready.status).toBe("draining")
      const refused = yield* Effect.promise(async () =>
        ChatClient.connect(server.wsUrl, { token: await sign("bob") }).then(() => undefined, (e: unknown) => e)
      )
      expect(refused).toBeInstanceOf(UpgradeRefused)
      expect((refused as UpgradeRefused).status).toBe(503)
      const other = yield* Effect.promise(() => alice.request({ type: "create_thread" }))
      const late = yield* Effect.promise(() =>
        alice.request({ type: "send_message", thread_id: other.thread_id, content: "too late" }).catch((e) => e)
      )
      expect(String(late)).toMatch(/busy: the server is shutting down/)

      gate.openFully()
      const terminal = yield* Effect.promise(() => alice.waitRunEnd(sent.run_id))
      expect(terminal.event_type).toBe("agent_completed")
      expect((yield* Effect.promise(() => alice.waitClose())).code).toBe(1001)
      yield* Fiber.join(shutdown)
    }))

  it.live("cancels runs still active after the grace period, delivers their terminal event, then closes 1001", () =>
    Effect.gen(function*() {
      const gate = new Gate()
      const { scope, server } = yield* start(gate, Duration.millis(300))
      const alice = yield* Effect.promise(async () => ChatClient.connect(server.wsUrl, { token: await sign("alice") }))
      const { thread_id } = yield* Effect.promise(() => alice.request({ type: "create_thread" }))
      const sent = yield* Effect.promise(() => alice.request({ type: "send_message", thread_id, content: "stuck" }))
      yield* Effect.promise(() => alice.waitFor((f) => f.type === "event" && f.event_type === "agent_thinking"))
      yield* Scope.close(scope, Exit.void)
      const terminal = yield* Effect.promise(() => alice.waitRunEnd(sent.run_id))
      expect(terminal).toMatchObject({ event_type: "agent_error", data: { code: "cancelled" } })
      expect(terminal.data.message).toMatch(/shut down/)
      expect((yield* Effect.promise(() => alice.waitClose())).code).toBe(1001)
    }))

  it.live("closes a tool call a shutdown cuts short with tool_completed interrupted, before the terminal", () =>
    Effect.gen(function*() {
      const stall: Tool = { name: "stall", description: "never answers", parameters: {}, run: () => Effect.never }
      const scope = yield* Scope.make()
      const context = yield* Layer.buildWithScope(
        TestServer.layer({
          model: toolCallingModel("stall", {}),
          extraTools: [stall],
          config: { shutdownGrace: Duration.millis(300) }
        }),
        scope
      )
      const server = Context.get(context, TestServer)
      const alice = yield* Effect.promise(async () => ChatClient.connect(server.wsUrl, { token: await sign("alice") }))
      const { thread_id } = yield* Effect.promise(() => alice.request({ type: "create_thread" }))
      const sent = yield* Effect.promise(() => alice.request({ type: "send_message", thread_id, content: "stall" }))
      yield* Effect.promise(() => alice.waitFor((f) => f.type === "event" && f.event_type === "tool_executing"))
      yield* Scope.close(scope, Exit.void)
      yield* Effect.promise(() => alice.waitRunEnd(sent.run_id))
      const run = expectRunShape(alice.events(thread_id), sent.run_id)
      expect(run.slice(-2).map((e) => [e.event_type, e.data.error ?? e.data.code])).toEqual([
        ["tool_completed", "interrupted"],
        ["agent_error", "cancelled"]
      ])
      expect((yield* Effect.promise(() => alice.waitClose())).code).toBe(1001)
    }))

  it.live("still shuts down, closing with 1001, while the database is lost", () =>
    Effect.gen(function*() {
      const proxy = yield* Effect.acquireRelease(Effect.promise(() => TcpProxy.start()), (p) =>
        Effect.promise(() => p.close()))
      const gate = new Gate()
      const { scope, server } = yield* start(gate, Duration.millis(300), proxy)
      const alice = yield* Effect.promise(async () =>
        ChatClient.connect(server.wsUrl, { token: await sign("alice") })
      )
      const { thread_id } = yield* Effect.promise(() => alice.request({ type: "create_thread" }))
      yield* Effect.promise(() => alice.request({ type: "send_message", thread_id, content: "stuck" }))
      yield* Effect.promise(() => alice.waitFor((f) => f.type === "event" && f.event_type === "agent_thinking"))
      proxy.cut()
      // The run's end cannot be stored now (the next process will close the run); shutdown must not wait for it.
      yield* Scope.close(scope, Exit.void)
      expect((yield* Effect.promise(() => alice.waitClose())).code).toBe(1001)
    }).pipe(Effect.scoped))
})

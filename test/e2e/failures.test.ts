import { expect, layer } from "@effect/vitest"
import { Duration, Effect } from "effect"
import type { ChatMessage } from "../../src/llm/SimpleModel.ts"
import type { Tool } from "../../src/runs/Tool.ts"
import { expectRunShape } from "../utils/invariants.ts"
import { call, delta, Gate, scriptedModel, thinking } from "../utils/Models.ts"
import { TestServer, withServer } from "../utils/TestServer.ts"

const never = new Gate()

/** Behaves as the user's message says: "fail", "hang", "loop", or "tool <name> <json input>". */
const directedModel = scriptedModel((messages: ReadonlyArray<ChatMessage>) => {
  const last = messages.at(-1)!
  const user = [...messages].reverse().find((m) => m.role === "user")
  const content = user?.role === "user" ? user.content : ""
  if (content === "loop") return [call(`c${messages.length}`, "calculator", { expression: "1+1" })]
  if (last.role === "tool") {
    return [delta(last.isError ? `the tool failed: ${String(last.result)}` : `got ${JSON.stringify(last.result)}`)]
  }
  if (content === "fail") return [thinking("trying"), delta("half an answer "), "fail"]
  if (content === "hang") return [thinking("waiting forever"), "gate", delta("never")]
  const tool = /^tool (\S+) (.*)$/.exec(content)
  if (tool !== null) return [call("c1", tool[1]!, JSON.parse(tool[2]!))]
  return [delta("ok")]
}, never)

/** A tool that never answers. */
const stall: Tool = { name: "stall", description: "never answers", parameters: {}, run: () => Effect.never }

layer(
  TestServer.layer({
    model: directedModel,
    extraTools: [stall],
    config: { runTimeout: Duration.seconds(2), toolTimeout: Duration.millis(300), maxAgentSteps: 3 }
  }),
  { excludeTestServices: true, timeout: 60_000 }
)("failures inside a run", (it) => {
  const run = async (server: import("../utils/TestServer.ts").TestServerShape, content: string) => {
    const alice = await server.connect("alice")
    const { thread_id } = await alice.request({ type: "create_thread" })
    const sent = await alice.request({ type: "send_message", thread_id, content })
    const terminal = await alice.waitRunEnd(sent.run_id)
    return { terminal, events: expectRunShape(alice.events(thread_id), sent.run_id) }
  }

  it.effect("reports a failing tool in tool_completed and lets the run finish", () =>
    withServer(async (server) => {
      const { events, terminal } = await run(server, "tool calculator {\"expression\":\"1/0\"}")
      const completed = events.find((e) => e.event_type === "tool_completed")!
      expect(completed.data).toMatchObject({ tool: "calculator", error: "division by zero" })
      expect(completed.data).not.toHaveProperty("output")
      expect(terminal).toMatchObject({
        event_type: "agent_completed",
        data: { response: "the tool failed: division by zero" }
      })
    }))

  it.effect("reports a tool input the tool cannot accept, and an unknown tool, the same way", () =>
    withServer(async (server) => {
      const bad = await run(server, "tool calculator {\"expr\":3}")
      expect(bad.events.find((e) => e.event_type === "tool_completed")!.data.error).toMatch(/invalid input/)
      expect(bad.terminal.event_type).toBe("agent_completed")
      const unknown = await run(server, "tool teleport {}")
      expect(unknown.events.find((e) => e.event_type === "tool_completed")!.data.error).toMatch(
        /unknown tool "teleport"/
      )
      expect(unknown.terminal.event_type).toBe("agent_completed")
    }))

  it.effect("ends the run with llm_failed when the model fails", () =>
    withServer(async (server) => {
      const { terminal } = await run(server, "fail")
      expect(terminal).toMatchObject({ event_type: "agent_error", data: { code: "llm_failed" } })
      expect(terminal.data.message).toMatch(/500/)
    }))

  it.effect("ends a run that takes too long with timeout", () =>
    withServer(async (server) => {
      const { terminal } = await run(server, "hang")
      expect(terminal).toMatchObject({ event_type: "agent_error", data: { code: "timeout" } })
    }))

  it.effect("ends the run with timeout when a tool does not answer in time, after its tool_completed", () =>
    withServer(async (server) => {
      const { events, terminal } = await run(server, "tool stall {}")
      const completed = events.find((e) => e.event_type === "tool_completed")!
      expect(completed.data).toMatchObject({ tool: "stall", error: "timed out after 300ms" })
      expect(completed.data.duration_ms).toBeGreaterThanOrEqual(300)
      expect(terminal).toMatchObject({ event_type: "agent_error", data: { code: "timeout" } })
      expect(terminal.data.message).toBe("the tool \"stall\" did not answer within 300ms")
    }))

  it.effect("stops an agent that keeps calling tools after the step limit", () =>
    withServer(async (server) => {
      const { events, terminal } = await run(server, "loop")
      expect(events.filter((e) => e.event_type === "tool_completed")).toHaveLength(3)
      expect(terminal).toMatchObject({ event_type: "agent_error", data: { code: "internal" } })
      expect(terminal.data.message).toMatch(/3 steps/)
    }))
})

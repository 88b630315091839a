import { afterAll, expect, layer } from "@effect/vitest"
import { Option } from "effect"
import { createServer } from "node:http"
import type { AddressInfo } from "node:net"
import { toolCallingModel } from "../utils/Models.ts"
import { TestServer, withServer } from "../utils/TestServer.ts"

interface Span {
  readonly name: string
  readonly spanId: string
  readonly parentSpanId?: string
  readonly attributes: ReadonlyArray<{ key: string; value: { stringValue?: string } }>
}

// A stand-in OTLP/HTTP collector: it keeps every span posted to /v1/traces, with its service name.
const spans: Array<Span & { service: string }> = []
const collector = createServer((request, response) => {
  let body = ""
  request.on("data", (chunk: Buffer) => body += chunk.toString())
  request.on("end", () => {
    if (request.url === "/v1/traces") {
      for (const resourceSpans of JSON.parse(body).resourceSpans) {
        const service = resourceSpans.resource.attributes.find((a: Span["attributes"][number]) =>
          a.key === "service.name"
        )?.value.stringValue
        for (const scope of resourceSpans.scopeSpans) for (const span of scope.spans) spans.push({ ...span, service })
      }
    }
    response.writeHead(200, { "content-type": "application/json" }).end("{}")
  })
})
await new Promise<void>((resolve) => collector.listen(0, "127.0.0.1", resolve))
afterAll(() => new Promise<void>((resolve) => collector.close(() => resolve())))
const endpoint = `http://127.0.0.1:${(collector.address() as AddressInfo).port}`

const attribute = (span: Span, key: string) => span.attributes.find((a) => a.key === key)?.value.stringValue

layer(
  TestServer.layer({
    model: toolCallingModel("calculator", { expression: "6 * 7" }),
    config: { tracing: { otlpEndpoint: Option.some(endpoint), serviceName: "agent-chat-traced" } }
  }),
  { excludeTestServices: true, timeout: 60_000 }
)("tracing", (it) => {
  it.effect("exports spans of the connection, its frames, the run and the tool call over OTLP", () =>
    withServer(async (server) => {
      const alice = await server.connect("alice")
      const { thread_id } = await alice.request({ type: "create_thread" })
      const sent = await alice.request({ type: "send_message", thread_id, content: "compute" })
      await alice.waitRunEnd(sent.run_id)
      const welcome = alice.frames.find((f) => f.type === "welcome") as { connection_id: string }
      alice.close()

      const deadline = Date.now() + 15_000
      const find = (name: string, check: (span: Span) => boolean = () => true) =>
        spans.find((s) => s.name === name && check(s))
      while (
        (find("WebSocket.connection") === undefined || find("ToolDispatcher.execute") === undefined) &&
        Date.now() < deadline
      ) {
        await new Promise((resolve) => setTimeout(resolve, 50))
      }
      const connection = find("WebSocket.connection", (s) => attribute(s, "connection_id") === welcome.connection_id)
      expect(connection).toBeDefined()
      expect(attribute(connection!, "user_id")).toBe("alice")
      expect(connection!.service).toBe("agent-chat-traced")
      const frame = find("Session.frame", (s) => attribute(s, "type") === "send_message")
      expect(frame?.parentSpanId).toBe(connection!.spanId)
      const run = find("Supervisor.run", (s) => attribute(s, "run_id") === sent.run_id)
      expect(run).toBeDefined()
      expect(attribute(find("ToolDispatcher.execute")!, "tool")).toBe("calculator")
    }))
})

import { expect, layer } from "@effect/vitest"
import { ChatClient, UpgradeRefused } from "../utils/ChatClient.ts"
import { TestServer, type TestServerShape, withServer } from "../utils/TestServer.ts"

/** Parses the exposition text into samples keyed by `name{labels}`, checking its shape on the way. */
const scrape = async (server: TestServerShape) => {
  const response = await fetch(`${server.httpUrl}/metrics`)
  expect(response.status).toBe(200)
  expect(response.headers.get("content-type")).toMatch(/^text\/plain; version=0\.0\.4/)
  const samples = new Map<string, number>()
  const typed = new Set<string>()
  for (const line of (await response.text()).trimEnd().split("\n")) {
    const type = /^# TYPE (\w+) (counter|gauge|histogram)$/.exec(line)
    if (type !== null) {
      expect(typed.has(type[1]!), `one TYPE line for ${type[1]}`).toBe(false)
      typed.add(type[1]!)
      continue
    }
    if (line.startsWith("# HELP ")) continue
    const sample = /^(\w+)(\{[^}]*\})? (-?[\d.e+-]+|\+Inf)$/.exec(line)
    expect(sample, line).not.toBeNull()
    const family = sample![1]!.replace(/_(bucket|sum|count)$/, "")
    expect(typed.has(family) || typed.has(sample![1]!), `TYPE before ${line}`).toBe(true)
    samples.set(`${sample![1]}${sample![2] ?? ""}`, Number(sample![3]))
  }
  return samples
}

layer(TestServer.layer(), { excludeTestServices: true, timeout: 60_000 })("GET /metrics", (it) => {
  it.effect("reports connections, frames, deliveries, runs, tools, refusals and component health", () =>
    withServer(async (server) => {
      const before = await scrape(server)
      const alice = await server.connect("alice")
      const { thread_id } = await alice.request({ type: "create_thread" })
      const sent = await alice.request({ type: "send_message", thread_id, content: "what is 6 * 7" })
      await alice.waitRunEnd(sent.run_id)
      await ChatClient.connect(server.wsUrl, { token: "bad" }).then(
        () => expect.unreachable(),
        (error) => expect(error).toBeInstanceOf(UpgradeRefused)
      )
      const after = await scrape(server)
      const grew = (key: string) => (after.get(key) ?? 0) - (before.get(key) ?? 0)

      expect(after.get("agentchat_component_up{component=\"database\"}")).toBe(1)
      expect(after.get("agentchat_component_up{component=\"broker\"}")).toBe(1)
      expect(after.get("agentchat_connections_open")).toBeGreaterThanOrEqual(1)
      expect(grew("agentchat_connections_total")).toBe(1)
      expect(grew("agentchat_frames_in_total")).toBe(2)
      expect(grew("agentchat_frames_out_total")).toBeGreaterThan(5)
      expect(grew("agentchat_events_delivered_total")).toBe(alice.events(thread_id).length)
      expect(grew("agentchat_runs_total{outcome=\"started\"}")).toBe(1)
      expect(grew("agentchat_runs_total{outcome=\"completed\"}")).toBe(1)
      expect(grew("agentchat_run_duration_seconds_count")).toBe(1)
      expect(grew("agentchat_tool_duration_seconds_bucket{tool=\"calculator\",le=\"+Inf\"}")).toBe(1)
      expect(grew("agentchat_upgrade_refusals_total{reason=\"unauthorized\"}")).toBe(1)
      expect(after.get("agentchat_outbox_depth_count")).toBeGreaterThan(0)
      expect(after.get("agentchat_runs_active")).toBe(0)
      for (const component of ["database", "broker", "auth", "websocket", "supervisor"]) {
        expect(after.get(`agentchat_startup_seconds{component="${component}"}`), component).toBeGreaterThanOrEqual(0)
      }
    }))
})

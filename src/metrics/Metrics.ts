/**
 * The server's metrics. Counts on the hot paths (frames, deliveries) are
 * plain numbers kept by the hub and read at scrape time, so fan-out pays an
 * integer increment, not a metric lookup; the rest are Effect metrics.
 */
import { Metric, MetricBoundaries } from "effect"

export const upgradeRefusals = Metric.counter("agentchat_upgrade_refusals_total", {
  description: "WebSocket upgrades refused before the handshake, by reason",
  incremental: true
})

export const runs = Metric.counter("agentchat_runs_total", {
  description: "agent runs by outcome: started, completed, failed, cancelled",
  incremental: true
})

export const runDuration = Metric.histogram(
  "agentchat_run_duration_seconds",
  MetricBoundaries.exponential({ start: 0.05, factor: 2, count: 12 }),
  "duration of agent runs"
)

export const toolDuration = Metric.histogram(
  "agentchat_tool_duration_seconds",
  MetricBoundaries.exponential({ start: 0.001, factor: 4, count: 10 }),
  "duration of tool calls, by tool"
)

export const databaseLost = Metric.counter("agentchat_database_lost_total", {
  description: "times the database stopped answering after startup",
  incremental: true
})

export const startupSeconds = Metric.gauge("agentchat_startup_seconds", {
  description: "time each component took to start"
})

/** Plain counters of one hub, bumped on hot paths. */
export class HubCounters {
  connects = 0
  framesIn = 0
  framesOut = 0
  eventsDelivered = 0
  eventsDropped = 0
  slowConsumerCloses = 0
  /** Frames written per flush: how deep outboxes get before the socket takes them. */
  readonly outboxDepth = new Buckets([1, 2, 4, 8, 16, 64, 256, 1024, 4096])
}

/** A histogram without allocation per observation. */
export class Buckets {
  readonly counts: Array<number>
  count = 0
  sum = 0

  constructor(readonly bounds: ReadonlyArray<number>) {
    this.counts = bounds.map(() => 0)
  }

  observe(value: number) {
    this.count++
    this.sum += value
    for (let i = 0; i < this.bounds.length; i++) {
      if (value <= this.bounds[i]!) {
        this.counts[i]!++
        return
      }
    }
  }
}

export const llmRequests = Metric.counter("agentchat_llm_requests_total", {
  description: "model requests by provider and outcome: ok, failed, timeout, rate_limited, cancelled",
  incremental: true
})

export const llmTokens = Metric.counter("agentchat_llm_tokens_total", {
  description: "tokens reported by the provider, by direction: input, output",
  incremental: true
})

export const llmTimeToFirstToken = Metric.histogram(
  "agentchat_llm_time_to_first_token_seconds",
  MetricBoundaries.exponential({ start: 0.025, factor: 2, count: 12 }),
  "time from a model request to its first streamed piece"
)

export const llmRequestDuration = Metric.histogram(
  "agentchat_llm_request_duration_seconds",
  MetricBoundaries.exponential({ start: 0.05, factor: 2, count: 12 }),
  "duration of model requests, to the end of their stream"
)

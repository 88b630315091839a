/**
 * How a thread's events print for people: thinking dimmed, each tool call
 * with its input, then its output (or error) and duration, the answer as
 * it streams, and how the run ended. `--json` prints the events raw.
 */
import type { ThreadEvent } from "../client/index.ts"

export interface Out {
  readonly write: (text: string) => void
  readonly color: boolean
}

const paint = (out: Out, code: number, text: string) => out.color ? `\x1b[${code}m${text}\x1b[0m` : text
const json = (value: unknown) => JSON.stringify(value)

export class Renderer {
  /** An answer is being written: the next line starts after a line break. */
  private streaming = false

  constructor(private readonly out: Out, private readonly self: string | undefined) {}

  private line(text: string) {
    if (this.streaming) {
      this.out.write("\n")
      this.streaming = false
    }
    this.out.write(`${text}\n`)
  }

  event(event: ThreadEvent) {
    const { out } = this
    switch (event.event_type) {
      case "message_created":
        if (event.data.user_id !== this.self) this.line(`${paint(out, 1, event.data.user_id)}: ${event.data.content}`)
        return
      case "agent_started":
        return this.line(paint(out, 2, `[${event.data.agent}]`))
      case "agent_thinking":
        return this.line(paint(out, 2, `  thinking: ${event.data.text}`))
      case "tool_executing":
        return this.line(paint(out, 36, `  → ${event.data.tool} ${json(event.data.input)}`))
      case "tool_completed": {
        const { data } = event
        const result = "error" in data ? paint(out, 31, `error: ${data.error}`) : json(data.output)
        return this.line(paint(out, 36, `  ← ${data.tool} (${data.duration_ms} ms) `) + result)
      }
      case "agent_response_delta":
        this.out.write(event.data.delta)
        this.streaming = true
        return
      case "agent_completed":
        return this.line(paint(out, 2, `  (completed in ${event.data.duration_ms} ms)`))
      case "agent_error":
        return this.line(paint(out, 31, `  ✗ ${event.data.code}: ${event.data.message}`))
      case "members_changed": {
        const { added, removed } = event.data
        const parts = [...added.map((u) => `+${u}`), ...removed.map((u) => `-${u}`)]
        return this.line(paint(out, 2, `  members ${parts.join(" ")} (by ${event.data.by})`))
      }
    }
  }

  note(text: string) {
    this.line(paint(this.out, 2, text))
  }
}

import { describe, expect, it } from "@effect/vitest"
import { respond } from "../../src/builtin/BuiltinModel.ts"
import type { ChatMessage, ModelChunk, ToolCall } from "../../src/llm/SimpleModel.ts"
import type { ClockOutput, SearchThreadOutput } from "../../src/runs/Tool.ts"

const system: ChatMessage = { role: "system", content: "be helpful" }
const user = (content: string, userId = "alice"): ChatMessage => ({
  role: "user",
  content,
  userId,
  messageId: `m-${content.length}`
})

const ask = (content: string, history: ReadonlyArray<ChatMessage> = []) => respond([system, ...history, user(content)])

const calls = (chunks: ReadonlyArray<ModelChunk>): ReadonlyArray<ToolCall> =>
  chunks.flatMap((c) => c._tag === "ToolCall" ? [c.call] : [])
const thoughts = (chunks: ReadonlyArray<ModelChunk>) => chunks.flatMap((c) => c._tag === "Thinking" ? [c.text] : [])
const deltas = (chunks: ReadonlyArray<ModelChunk>) => chunks.flatMap((c) => c._tag === "TextDelta" ? [c.delta] : [])
const text = (chunks: ReadonlyArray<ModelChunk>) => deltas(chunks).join("")

interface Result {
  readonly name: string
  readonly input: unknown
  readonly result: unknown
  readonly isError?: boolean
}

/** A conversation in which the agent called tools and got these results back. */
const answered = (results: ReadonlyArray<Result>, question = "question") => {
  const toolCalls = results.map((r, i) => ({ id: `call-${i}`, name: r.name, input: r.input }))
  return respond([
    system,
    user(question),
    { role: "assistant", content: "", toolCalls },
    ...results.map((r, i): ChatMessage => ({
      role: "tool",
      toolCallId: `call-${i}`,
      name: r.name,
      result: r.result,
      isError: r.isError ?? false
    }))
  ])
}

const clockOutput: ClockOutput = {
  iso: "2026-11-22T20:51:46.000Z",
  timezone: "UTC",
  local: "Sunday, 22 November 2026, 20:51:46",
  weekday: "Sunday"
}

const match = (user_id: string, content: string) => ({
  message_id: `m-${content}`,
  user_id,
  content,
  created_at: "2026-11-22T20:00:00.000Z"
})

describe("BuiltinModel, planning", () => {
  it("calls the calculator once per expression, after a thought naming them", () => {
    const chunks = ask("what is 12 * (3 + 4)?")
    expect(calls(chunks)).toMatchObject([{ name: "calculator", input: { expression: "12 * (3 + 4)" } }])
    expect(chunks[0]).toEqual({
      _tag: "Thinking",
      text: "The message asks for 12 * (3 + 4); I will use the calculator."
    })
    expect(deltas(chunks)).toEqual([])

    const two = ask("what's 7 plus 5 times 2 and sqrt(16) + 2?")
    expect(calls(two).map((c) => c.input)).toEqual([{ expression: "7 + 5 * 2" }, { expression: "sqrt(16) + 2" }])
    expect(thoughts(two).join(" ")).toContain("7 + 5 * 2 and sqrt(16) + 2")
  })

  it("asks the clock about date and time questions, with the zone the user names", () => {
    expect(calls(ask("what time is it?"))).toMatchObject([{ name: "clock", input: {} }])
    expect(calls(ask("what day is it tomorrow?"))).toMatchObject([{ name: "clock", input: {} }])
    expect(calls(ask("what time is it in Europe/Paris?"))).toMatchObject([
      { name: "clock", input: { timezone: "Europe/Paris" } }
    ])
    expect(calls(ask("what's the date in America/New_York"))).toMatchObject([
      { name: "clock", input: { timezone: "America/New_York" } }
    ])
    expect(calls(ask("current time in UTC please"))).toMatchObject([{ name: "clock", input: { timezone: "UTC" } }])
    expect(thoughts(ask("what time is it in Europe/Paris?"))[0]).toContain("Europe/Paris")
  })

  it("does not take a time word in a statement, or a question about the agent, for a tool request", () => {
    expect(calls(ask("I had a great day"))).toEqual([])
    expect(calls(ask("what did you think of the film?"))).toEqual([])
  })

  it("searches the thread with the keywords of a question about earlier messages", () => {
    expect(calls(ask("what did I say earlier about the budget?"))).toMatchObject([
      { name: "search_thread", input: { query: "budget" } }
    ])
    const bob = user("the deployment plan is ready", "bob")
    expect(calls(ask("did bob mention the deployment plans before?", [bob]))).toMatchObject([
      { name: "search_thread", input: { query: "deployment plan" } }
    ])
    expect(calls(ask("do you remember?"))).toMatchObject([{ name: "search_thread", input: { query: "" } }])
    expect(calls(ask("What did I say earlier, when we talked about pizza?"))).toMatchObject([
      { name: "search_thread", input: { query: "pizza" } }
    ])
    expect(thoughts(ask("what did I say earlier about the budget?"))[0]).toContain("\"budget\"")
  })

  it("makes one call per intent when a message has several, all thoughts first", () => {
    const chunks = ask("what is 6 * 7, what did I mention earlier about pizza, and what time is it?")
    expect(calls(chunks).map((c) => [c.name, c.input])).toEqual([
      ["calculator", { expression: "6 * 7" }],
      ["search_thread", { query: "pizza" }],
      ["clock", {}]
    ])
    const firstCall = chunks.findIndex((c) => c._tag === "ToolCall")
    expect(chunks.slice(0, firstCall).every((c) => c._tag === "Thinking")).toBe(true)
    expect(chunks.slice(firstCall).every((c) => c._tag === "ToolCall")).toBe(true)
    expect(new Set(calls(chunks).map((c) => c.id)).size).toBe(3)
  })

  it("uses the id maker it is given", () => {
    let n = 0
    const chunks = respond([user("1 + 1 and 2 * 2")], { newId: () => `id-${++n}` })
    expect(calls(chunks).map((c) => c.id)).toEqual(["id-1", "id-2"])
  })

  it("does not call a tool that the request does not offer", () => {
    const chunks = respond([user("what is 2 + 2?")], { tools: ["clock"] })
    expect(calls(chunks)).toEqual([])
    expect(thoughts(chunks)[0]).toBe("The calculator tool is not available to me here.")
    expect(text(chunks)).toContain("what is 2 + 2?")
  })
})

describe("BuiltinModel, direct replies", () => {
  it("says no tool is needed, then streams the reply in several deltas", () => {
    const chunks = ask("I like trains very much")
    expect(calls(chunks)).toEqual([])
    expect(chunks[0]?._tag).toBe("Thinking")
    expect(thoughts(chunks)[0]).toContain("No tool is needed; answering directly.")
    const pieces = deltas(chunks)
    expect(pieces.length).toBeGreaterThan(1)
    for (const piece of pieces) expect(piece.trim().split(/\s+/).length).toBeLessThanOrEqual(3)
    expect(text(chunks)).toBe(
      "You wrote 5 words: \"I like trains very much\". I am the built-in offline agent, so I cannot discuss it, " +
        "but I can compute arithmetic, tell the date and time, and find earlier messages in this thread."
    )
  })

  it("greets back in kind and by name", () => {
    const hello = text(ask("hello there"))
    const hey = text(respond([user("hey!", "bob")]))
    const morning = text(ask("Good morning"))
    expect(hello).toMatch(/^Hello, alice! /)
    expect(hey).toMatch(/^Hey, bob! /)
    expect(morning).toMatch(/^Good morning, alice! /)
    expect(hello).toContain("offline agent")
  })

  it("explains its capabilities when asked for help", () => {
    for (const question of ["help", "what can you do?"]) {
      const reply = text(ask(question))
      expect(reply).toContain("arithmetic")
      expect(reply).toContain("Europe/Paris")
      expect(reply).toContain("earlier")
      expect(reply).toContain("sqrt")
    }
  })

  it("reflects what the user wrote, so different messages get different replies", () => {
    const a = text(ask("the weather is nice"))
    const b = text(ask("my favourite colour is green"))
    const question = text(ask("why is the sky blue?"))
    expect(a).toContain("\"the weather is nice\"")
    expect(a).toContain("4 words")
    expect(b).toContain("\"my favourite colour is green\"")
    expect(b).toContain("5 words")
    expect(question).toContain("You asked \"why is the sky blue?\"")
    expect(new Set([a, b, question, text(ask("hi")), text(ask("help"))]).size).toBe(5)
  })
})

describe("BuiltinModel, answers from tool results", () => {
  it("never calls a tool once results are in, even if the question had arithmetic", () => {
    const chunks = answered(
      [{ name: "calculator", input: { expression: "2+2" }, result: { expression: "2+2", result: 4 } }],
      "what is 2+2 and what time is it?"
    )
    expect(calls(chunks)).toEqual([])
    expect(chunks[0]).toEqual({ _tag: "Thinking", text: "Composing the answer from 1 tool result." })
    expect(text(chunks)).toBe("2+2 = 4")
  })

  it("writes calculator results with sensible precision", () => {
    const chunks = answered([
      { name: "calculator", input: { expression: "12 * (3 + 4)" }, result: { expression: "12 * (3 + 4)", result: 84 } },
      {
        name: "calculator",
        input: { expression: "0.1 + 0.2" },
        result: { expression: "0.1 + 0.2", result: 0.1 + 0.2 }
      },
      { name: "calculator", input: { expression: "1/3" }, result: { expression: "1/3", result: 1 / 3 } },
      { name: "calculator", input: { expression: "2^40" }, result: { expression: "2^40", result: 2 ** 40 } }
    ])
    expect(thoughts(chunks)).toEqual(["Composing the answer from 4 tool results."])
    expect(text(chunks)).toBe("12 * (3 + 4) = 84\n0.1 + 0.2 = 0.3\n1/3 = 0.3333333333\n2^40 = 1099511627776")
  })

  it("reports a calculator error with the expression it was given", () => {
    const chunks = answered([
      { name: "calculator", input: { expression: "1/0" }, result: "division by zero", isError: true }
    ])
    expect(text(chunks)).toBe("I could not evaluate 1/0: division by zero.")
  })

  it("tells the time from the clock, and reports a clock error", () => {
    expect(text(answered([{ name: "clock", input: {}, result: clockOutput }]))).toBe(
      "It is Sunday, 22 November 2026, 20:51:46 (UTC)."
    )
    const failed = answered([
      { name: "clock", input: { timezone: "Mars/Base" }, result: "unknown time zone \"Mars/Base\"", isError: true }
    ])
    expect(text(failed)).toBe("I could not read the clock: unknown time zone \"Mars/Base\".")
  })

  it("lists up to three search matches with who said what", () => {
    const output: SearchThreadOutput = {
      query: "budget",
      matches: [
        match("bob", "the budget is 10k"),
        match("carol", "budget   approved"),
        match("bob", "budget meeting at 3"),
        match("dave", "budget is late")
      ]
    }
    const reply = text(answered([{ name: "search_thread", input: { query: "budget" }, result: output }]))
    expect(reply).toBe(
      [
        "I found 4 earlier messages about \"budget\":",
        "- bob said: \"the budget is 10k\"",
        "- carol said: \"budget approved\"",
        "- bob said: \"budget meeting at 3\"",
        "(and 1 more)"
      ].join("\n")
    )
    expect(reply).not.toContain("dave")
  })

  it("says when the search found nothing, and reports a search error", () => {
    const none = answered([{
      name: "search_thread",
      input: { query: "pizza" },
      result: { query: "pizza", matches: [] }
    }])
    expect(text(none)).toBe("I found nothing earlier in this thread about \"pizza\".")
    const empty = answered([{ name: "search_thread", input: { query: "" }, result: { query: "", matches: [] } }])
    expect(text(empty)).toBe("I found no earlier messages in this thread.")
    const failed = answered([
      { name: "search_thread", input: { query: "x" }, result: "the thread history is unavailable", isError: true }
    ])
    expect(text(failed)).toBe("I could not search this thread: the thread history is unavailable.")
  })

  it("reports results of a tool it does not know honestly", () => {
    expect(text(answered([{ name: "weather", input: {}, result: { sunny: true } }]))).toBe(
      "The weather tool returned {\"sunny\":true}."
    )
    expect(text(answered([{ name: "weather", input: {}, result: "offline", isError: true }]))).toBe(
      "The weather tool failed: offline."
    )
  })

  it("combines several results in order, in deltas that add up to the whole answer", () => {
    const chunks = answered([
      { name: "calculator", input: { expression: "6 * 7" }, result: { expression: "6 * 7", result: 42 } },
      { name: "clock", input: {}, result: clockOutput }
    ])
    expect(deltas(chunks).length).toBeGreaterThan(1)
    expect(text(chunks)).toBe("6 * 7 = 42\nIt is Sunday, 22 November 2026, 20:51:46 (UTC).")
  })
})

/**
 * The words of the built-in agent: answers composed from tool results, and
 * direct replies when no tool is needed.
 */
import { Schema } from "effect"
import { detectGreeting, isHelpRequest, isThanks } from "./BuiltinIntents.ts"

/** Integers print exactly; anything else to 10 significant digits, so 0.1 + 0.2 reads 0.3. */
export const formatNumber = (value: number): string => {
  if (Object.is(value, -0)) return "0"
  if (Number.isInteger(value) && Math.abs(value) < 1e15) return String(value)
  return String(Number(value.toPrecision(10)))
}

/** One tool result together with the call that produced it. */
export interface Outcome {
  readonly name: string
  readonly input: unknown
  readonly result: unknown
  readonly isError: boolean
}

const isCalculatorInput = Schema.is(Schema.Struct({ expression: Schema.String }))
const isCalculatorOutput = Schema.is(Schema.Struct({ expression: Schema.String, result: Schema.Number }))
const isClockOutput = Schema.is(Schema.Struct({ local: Schema.String, timezone: Schema.String }))
const isSearchOutput = Schema.is(Schema.Struct({
  query: Schema.String,
  matches: Schema.Array(Schema.Struct({ user_id: Schema.String, content: Schema.String }))
}))

const shorten = (text: string, max: number) => {
  const flat = text.replace(/\s+/g, " ").trim()
  return flat.length <= max ? flat : `${flat.slice(0, max - 1).trimEnd()}…`
}

const sentence = (text: string) => /[.!?…]$/.test(text) ? text : `${text}.`

const errorText = (result: unknown) =>
  typeof result === "string" ? result : shorten(JSON.stringify(result) ?? "unknown error", 200)

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? "" : "s"}`

const SHOWN_MATCHES = 3

const searchAnswer = (query: string, matches: ReadonlyArray<{ user_id: string; content: string }>) => {
  const topic = query === "" ? "" : ` about "${query}"`
  if (matches.length === 0) {
    return query === ""
      ? "I found no earlier messages in this thread."
      : `I found nothing earlier in this thread about "${query}".`
  }
  const lines = matches.slice(0, SHOWN_MATCHES).map((m) => `- ${m.user_id} said: "${shorten(m.content, 100)}"`)
  const more = matches.length > SHOWN_MATCHES ? [`(and ${matches.length - SHOWN_MATCHES} more)`] : []
  return [`I found ${plural(matches.length, "earlier message")}${topic}:`, ...lines, ...more].join("\n")
}

const describeOutcome = (outcome: Outcome): string => {
  const { input, name, result } = outcome
  if (outcome.isError) {
    const error = errorText(result)
    switch (name) {
      case "calculator":
        return sentence(`I could not evaluate ${isCalculatorInput(input) ? input.expression : "that"}: ${error}`)
      case "clock":
        return sentence(`I could not read the clock: ${error}`)
      case "search_thread":
        return sentence(`I could not search this thread: ${error}`)
      default:
        return sentence(`The ${name} tool failed: ${error}`)
    }
  }
  if (name === "calculator" && isCalculatorOutput(result)) {
    return `${result.expression} = ${formatNumber(result.result)}`
  }
  if (name === "clock" && isClockOutput(result)) return `It is ${result.local} (${result.timezone}).`
  if (name === "search_thread" && isSearchOutput(result)) return searchAnswer(result.query, result.matches)
  // An output of an unexpected shape is still shown rather than hidden.
  return `The ${name} tool returned ${shorten(JSON.stringify(result) ?? "nothing", 200)}.`
}

export const composeAnswer = (outcomes: ReadonlyArray<Outcome>): string =>
  outcomes.length === 0 ? "The tools returned nothing." : outcomes.map(describeOutcome).join("\n")

const CAPABILITIES = [
  "- arithmetic: \"what is 12 * (3 + 4)?\" or \"7 plus 5 times 2\" (+ - * / % ^, sqrt, abs, round, floor, ceil, " +
  "ln, log, sin, cos, tan, min, max, pi, e)",
  "- the date and time: \"what time is it in Europe/Paris?\"",
  "- this thread's history: \"what did I say earlier about the budget?\""
]

export interface DirectReply {
  /** Why this reply, for the Thinking chunk. */
  readonly reason: string
  readonly text: string
}

/** A reply for a message that needs no tool; it always reflects what the user wrote. */
export const directReply = (content: string, userId: string): DirectReply => {
  const words = content.match(/\S+/g) ?? []
  const greeting = detectGreeting(content)
  if (words.length === 0) {
    return { reason: "The message is empty.", text: "Your message is empty. Ask me something, or type help." }
  }
  if (isHelpRequest(content)) {
    return {
      reason: "The message asks what I can do.",
      text: [`Here is what I can do for you, ${userId}:`, ...CAPABILITIES].join("\n")
    }
  }
  if (greeting !== undefined) {
    return {
      reason: "The message is a greeting.",
      text: `${greeting}, ${userId}! I am the built-in offline agent. Ask me to compute something, ` +
        "tell you the date and time, or find an earlier message in this thread."
    }
  }
  if (isThanks(content)) {
    return { reason: "The message thanks me.", text: `You're welcome, ${userId}! Ask again any time.` }
  }
  const quote = shorten(content, 80)
  if (content.trim().endsWith("?")) {
    return {
      reason: "The message is a question none of my tools can answer.",
      text: `You asked "${quote}", but I am the built-in offline agent and can only answer with my tools: ` +
        "arithmetic, the date and time, and searching earlier messages in this thread. Type help for examples."
    }
  }
  return {
    reason: "The message is a statement, not a request for a tool.",
    text: `You wrote ${plural(words.length, "word")}: "${quote}". I am the built-in offline agent, so I cannot ` +
      "discuss it, but I can compute arithmetic, tell the date and time, and find earlier messages in this thread."
  }
}

const WORDS_PER_DELTA = 3

/** Splits a text into pieces of a few words that concatenate back to exactly the text. */
export const toDeltas = (text: string): ReadonlyArray<string> => {
  const pieces = text.match(/\s*\S+\s*/g) ?? (text === "" ? [] : [text])
  const deltas: Array<string> = []
  for (let i = 0; i < pieces.length; i += WORDS_PER_DELTA) {
    deltas.push(pieces.slice(i, i + WORDS_PER_DELTA).join(""))
  }
  return deltas
}

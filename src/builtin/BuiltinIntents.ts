/**
 * What the built-in agent recognises in a user's message: questions about
 * the date and time, questions about earlier messages, greetings, requests
 * for help. Arithmetic is found by the calculator's own extractor.
 */
import type { ClockInput, SearchThreadInput } from "../runs/Tool.ts"
import { extractExpressions } from "./Calculator.ts"

const STRONG_CLOCK = new RegExp(
  [
    String.raw`\b(?:what|which)\b[^.?!]{0,20}?\b(?:time|date|day|year|month|weekday)\b`,
    String.raw`\btime\s+is\s+it\b`,
    String.raw`\bclock\b`,
    String.raw`\b(?:current|local|today'?s)\s+(?:time|date|day|year|month)\b`,
    String.raw`\btime\s+(?:in|at)\s+\S`
  ].join("|"),
  "i"
)
const WEAK_CLOCK = /\b(?:time|date|day|today|tomorrow|tonight|year|month|weekday|hour)\b/i
const QUESTION = /\?|^\s*(?:what|which|when|is|tell|do\s+you\s+know)\b/i

const IANA_ZONE =
  /\b(?:Africa|America|Antarctica|Arctic|Asia|Atlantic|Australia|Europe|Indian|Pacific|Etc)\/[A-Za-z_]+(?:[+-]\d{1,2})?(?:\/[A-Za-z_]+)?/i
const UTC = /\b(?:UTC|GMT|Zulu)\b/i
const CITIES: ReadonlyArray<readonly [RegExp, string]> = [
  [/\bparis\b/i, "Europe/Paris"],
  [/\blondon\b/i, "Europe/London"],
  [/\bberlin\b/i, "Europe/Berlin"],
  [/\bmadrid\b/i, "Europe/Madrid"],
  [/\bnew\s+york\b/i, "America/New_York"],
  [/\bchicago\b/i, "America/Chicago"],
  [/\b(?:los\s+angeles|san\s+francisco)\b/i, "America/Los_Angeles"],
  [/\btokyo\b/i, "Asia/Tokyo"],
  [/\bsingapore\b/i, "Asia/Singapore"],
  [/\b(?:mumbai|delhi)\b/i, "Asia/Kolkata"],
  [/\bsydney\b/i, "Australia/Sydney"]
]

// Intl knows zones case-insensitively; asking it for the canonical spelling keeps "europe/paris" readable.
const canonicalZone = (zone: string) => {
  try {
    return new Intl.DateTimeFormat("en-GB", { timeZone: zone }).resolvedOptions().timeZone
  } catch {
    return zone
  }
}

const timezoneOf = (text: string): string | undefined => {
  const iana = IANA_ZONE.exec(text)
  if (iana !== null) return canonicalZone(iana[0])
  if (UTC.test(text)) return "UTC"
  return CITIES.find(([pattern]) => pattern.test(text))?.[1]
}

/**
 * A time word alone ("a great day") is not a question about the clock; it
 * counts when phrased as a question and nothing else explains the message.
 */
export const detectClock = (text: string, hasOtherIntent: boolean): ClockInput | undefined => {
  const asked = STRONG_CLOCK.test(text) || (!hasOtherIntent && WEAK_CLOCK.test(text) && QUESTION.test(text))
  if (!asked) return undefined
  const timezone = timezoneOf(text)
  return timezone === undefined ? {} : { timezone }
}

const SEARCH_TRIGGER = new RegExp(
  [
    String.raw`\b(?:earlier|before|previous(?:ly)?|remember|recall|history|mentioned)\b`,
    String.raw`\bdid\s+\w+\s+(?:say|mention|tell|ask|write|talk)\b`,
    String.raw`\bwhat\s+did\s+(?:i|we)\b`
  ].join("|"),
  "i"
)

const STOP_WORDS = new Set(
  (
    "a about above after again ago all already also am an and any anyone anything are as ask asked at be been before " +
    "but by can chat could did do does earlier else ever find for from had has have he her here him his history how " +
    "i if i'm in into is it it's its just know last let like list look me mention mentioned message messages my " +
    "no not now of on once or our please post posted previous previously recall remember remind said say says she " +
    "show so some someone something talk talked tell that the their them then there these they this thread those to " +
    "told up us was we were what what's whats when where which who whom why will with write wrote would you your"
  ).split(" ")
)

// Search matches substrings, so "meetings" would miss "meeting" while "meeting" finds both.
const stem = (word: string) => word.length > 4 && word.endsWith("s") && !word.endsWith("ss") ? word.slice(0, -1) : word

const MAX_TERMS = 5

const WORDS = /[\p{L}\p{N}]+(?:'\p{L}+)?/gu
const QUESTION_WORD = String.raw`(?=(?:what|when|which|who|where|how|tell|is|can|could|do|did)\b)`
const CLAUSE = new RegExp(String.raw`[.?!;]|,\s*(?:and\s+)?${QUESTION_WORD}|\band\s+${QUESTION_WORD}`, "i")

/**
 * The part of a message that asks about the past: from the first clause with
 * a trigger on, leaving out clauses that ask for something else, so "... about
 * pizza, and what time is it?" does not search for "time".
 */
const aboutThePast = (text: string) => {
  const clauses = text.split(CLAUSE)
  const start = clauses.findIndex((clause) => SEARCH_TRIGGER.test(clause))
  return clauses.slice(Math.max(start, 0)).filter((clause, i) =>
    i === 0 || SEARCH_TRIGGER.test(clause) ||
    (!STRONG_CLOCK.test(clause) && extractExpressions(clause).length === 0)
  ).join(" ")
}

/**
 * The thread search needs every term to match, so the query keeps only the
 * words that say what the message was about, not how the question was asked.
 */
export const detectSearch = (text: string, userIds: ReadonlyArray<string>): SearchThreadInput | undefined => {
  if (!SEARCH_TRIGGER.test(text)) return undefined
  const names = new Set(userIds.map((id) => id.toLowerCase()))
  const terms: Array<string> = []
  for (const match of aboutThePast(text).toLowerCase().matchAll(WORDS)) {
    const word = match[0]
    if (word.length < 2 || STOP_WORDS.has(word) || names.has(word)) continue
    const term = stem(word)
    if (!terms.includes(term) && terms.length < MAX_TERMS) terms.push(term)
  }
  return { query: terms.join(" ") }
}

const GREETING = /^\s*(hello|hi|hey|hiya|howdy|greetings|good\s+(?:morning|afternoon|evening)|yo)\b/i

/** The greeting the user opened with, so the agent can answer in kind. */
export const detectGreeting = (text: string): string | undefined => {
  const word = GREETING.exec(text)?.[1]
  return word === undefined ? undefined : word.charAt(0).toUpperCase() + word.slice(1).toLowerCase()
}

export const isHelpRequest = (text: string) =>
  /\bhelp\b|\bwhat\s+(?:can|do)\s+you\s+do\b|\bcapabilit|\bwho\s+are\s+you\b|\bhow\s+do(?:es)?\s+(?:this|it|you)\s+work\b/i
    .test(text)

export const isThanks = (text: string) => /\b(?:thanks|thank\s+you|thx|cheers)\b/i.test(text)

/**
 * The failures of the openai-chat provider, all AiErrors, each with a
 * one-line message that names the provider and what went wrong, for an
 * operator to read. None of them carries the key.
 */
import { AiError } from "@effect/ai"

export const PROVIDER = "openai-chat"

/** The model's answer could not be read: short messages, naming the provider. */
export class ChatOutputError extends AiError.MalformedOutput {
  override get message(): string {
    return `${PROVIDER}: ${this.description ?? "malformed answer"}`
  }
}

/** The provider reported an error inside the stream, or the stream broke off. */
export class ChatStreamError extends AiError.UnknownError {
  override get message(): string {
    return `${PROVIDER}: ${this.description ?? "the stream failed"}`
  }
}

export const malformed = (description: string, cause?: unknown): ChatOutputError =>
  new ChatOutputError({
    module: PROVIDER,
    method: "streamText",
    description,
    ...(cause === undefined ? {} : { cause })
  })

export const broken = (description: string, cause?: unknown): ChatStreamError =>
  new ChatStreamError({
    module: PROVIDER,
    method: "streamText",
    description,
    ...(cause === undefined ? {} : { cause })
  })

/** At most `max` characters of a text quoted in an error message. */
export const clip = (text: string, max = 200): string => text.length <= max ? text : `${text.slice(0, max)}…`

/** A non-2xx answer: `openai-chat: 401 POST http://…/chat/completions: Incorrect API key`. */
export class ChatResponseError extends AiError.HttpResponseError {
  override get message(): string {
    const where = `${this.response.status} ${this.request.method} ${this.request.url}`
    return `${PROVIDER}: ${where}${this.description === undefined ? "" : `: ${this.description}`}`
  }
}

/** No answer at all: `openai-chat: POST http://…/chat/completions: fetch failed: connect ECONNREFUSED …`. */
export class ChatRequestError extends AiError.HttpRequestError {
  override get message(): string {
    return `${PROVIDER}: ${this.request.method} ${this.request.url}: ${this.description ?? this.reason}`
  }
}

/** The messages of an error and of its causes, e.g. `fetch failed: connect ECONNREFUSED 127.0.0.1:9`. */
export const causeChain = (error: unknown): string => {
  const messages: Array<string> = []
  for (let at = error, depth = 0; at instanceof Error && depth < 4; at = at.cause, depth++) {
    if (at.message !== "" && !messages.includes(at.message)) messages.push(at.message)
  }
  return messages.length === 0 ? String(error) : messages.join(": ")
}

/** What an error body says, in one line: the provider's own message when there is one. */
export const describeBody = (text: string): string => {
  try {
    const body = JSON.parse(text)
    const error = body?.error
    const message = typeof error === "string"
      ? error
      : typeof error?.message === "string"
      ? error.message
      : typeof body?.message === "string"
      ? body.message
      : typeof body?.detail === "string"
      ? body.detail
      : undefined
    if (message !== undefined) return clip(message)
  } catch {
    // Not JSON: the text as it is.
  }
  return text.trim() === "" ? "empty body" : clip(text.trim())
}

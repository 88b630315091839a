/**
 * Recorded answers of the Responses API (`POST /v1/responses`, stream: true)
 * and the Messages API (`POST /v1/messages`) for the FakeLlmServer, shaped
 * as the real APIs send them: each SSE frame with its `event:` name and its
 * JSON data, in the order the APIs emit them. Also their error bodies and
 * the model lists of `GET /models` and `GET /v1/models`.
 */
import type { Answer } from "./FakeLlmServer.ts"

type Sse = Extract<Answer, { kind: "sse" }>

const sse = (events: ReadonlyArray<Record<string, unknown>>): Sse => ({
  kind: "sse",
  events,
  eventNames: events.map((e) => String(e.type))
})

/** The first `count` frames of a stream, left open: a model still answering. */
export const stalledAfter = (answer: Sse, count: number): Sse => ({
  ...answer,
  events: answer.events.slice(0, count),
  ...(answer.eventNames === undefined ? {} : { eventNames: answer.eventNames.slice(0, count) }),
  hang: true
})

export interface Usage {
  readonly input: number
  readonly output: number
  readonly reasoning?: number
  readonly cached?: number
}

// ---------------------------------------------------------------------------
// Responses API
// ---------------------------------------------------------------------------

export type ResponsesItem =
  | { readonly kind: "message"; readonly id?: string; readonly pieces: ReadonlyArray<string> }
  | {
    readonly kind: "function_call"
    readonly id?: string
    readonly callId: string
    readonly name: string
    readonly argsPieces: ReadonlyArray<string>
  }
  | { readonly kind: "reasoning"; readonly id?: string; readonly summaryPieces: ReadonlyArray<string> }

export interface ResponsesOptions {
  readonly id?: string
  readonly model?: string
  readonly usage?: Usage
}

const response = (options: ResponsesOptions, status: string, output: ReadonlyArray<unknown>, usage: unknown) => ({
  id: options.id ?? "resp_67ccd2bed1ec8190b14f964abc0542670bb6a6b452d3795b",
  object: "response",
  created_at: 1741476542,
  status,
  background: false,
  error: null,
  incomplete_details: null,
  instructions: null,
  max_output_tokens: null,
  max_tool_calls: null,
  model: options.model ?? "gpt-4.1-2025-04-14",
  output,
  parallel_tool_calls: true,
  previous_response_id: null,
  prompt_cache_key: null,
  reasoning: { effort: null, summary: null },
  safety_identifier: null,
  service_tier: "default",
  store: true,
  temperature: 1.0,
  text: { format: { type: "text" }, verbosity: "medium" },
  tool_choice: "auto",
  tools: [],
  top_logprobs: 0,
  top_p: 1.0,
  truncation: "disabled",
  usage,
  user: null,
  metadata: {}
})

/** A whole streamed response: `response.created` … `response.completed` with usage. */
export const responsesStream = (items: ReadonlyArray<ResponsesItem>, options: ResponsesOptions = {}): Sse => {
  const events: Array<Record<string, unknown>> = []
  const push = (type: string, fields: Record<string, unknown>) =>
    events.push({ type, sequence_number: events.length, ...fields })
  const done: Array<unknown> = []
  push("response.created", { response: response(options, "in_progress", [], null) })
  push("response.in_progress", { response: response(options, "in_progress", [], null) })
  items.forEach((item, output_index) => {
    switch (item.kind) {
      case "message": {
        const item_id = item.id ?? `msg_${output_index}67ccd2bf17f0819081ff3bb2cf6508e6`
        const text = item.pieces.join("")
        const part = (text: string) => ({ type: "output_text", annotations: [], logprobs: [], text })
        const at = { item_id, output_index, content_index: 0 }
        push("response.output_item.added", {
          output_index,
          item: { id: item_id, type: "message", status: "in_progress", content: [], role: "assistant" }
        })
        push("response.content_part.added", { ...at, part: part("") })
        for (const delta of item.pieces) push("response.output_text.delta", { ...at, delta, logprobs: [] })
        push("response.output_text.done", { ...at, text, logprobs: [] })
        push("response.content_part.done", { ...at, part: part(text) })
        const finished = { id: item_id, type: "message", status: "completed", content: [part(text)], role: "assistant" }
        push("response.output_item.done", { output_index, item: finished })
        done.push(finished)
        return
      }
      case "function_call": {
        const item_id = item.id ?? `fc_${output_index}67ccd2bf17f0819081ff3bb2cf6508e6`
        const call = { id: item_id, type: "function_call", call_id: item.callId, name: item.name }
        const args = item.argsPieces.join("")
        push("response.output_item.added", { output_index, item: { ...call, status: "in_progress", arguments: "" } })
        for (const delta of item.argsPieces) {
          push("response.function_call_arguments.delta", { item_id, output_index, delta })
        }
        push("response.function_call_arguments.done", { item_id, output_index, arguments: args })
        const finished = { ...call, status: "completed", arguments: args }
        push("response.output_item.done", { output_index, item: finished })
        done.push(finished)
        return
      }
      case "reasoning": {
        const item_id = item.id ?? `rs_${output_index}67ccd2bf17f0819081ff3bb2cf6508e6`
        const text = item.summaryPieces.join("")
        const at = { item_id, output_index, summary_index: 0 }
        push("response.output_item.added", { output_index, item: { id: item_id, type: "reasoning", summary: [] } })
        push("response.reasoning_summary_part.added", { ...at, part: { type: "summary_text", text: "" } })
        for (const delta of item.summaryPieces) push("response.reasoning_summary_text.delta", { ...at, delta })
        push("response.reasoning_summary_text.done", { ...at, text })
        push("response.reasoning_summary_part.done", { ...at, part: { type: "summary_text", text } })
        const finished = { id: item_id, type: "reasoning", summary: [{ type: "summary_text", text }] }
        push("response.output_item.done", { output_index, item: finished })
        done.push(finished)
        return
      }
    }
  })
  const u = options.usage ?? { input: 37, output: 11 }
  push("response.completed", {
    response: response(options, "completed", done, {
      input_tokens: u.input,
      input_tokens_details: { cached_tokens: u.cached ?? 0 },
      output_tokens: u.output,
      output_tokens_details: { reasoning_tokens: u.reasoning ?? 0 },
      total_tokens: u.input + u.output
    })
  })
  return sse(events)
}

export const responsesText = (pieces: ReadonlyArray<string>, options?: ResponsesOptions): Sse =>
  responsesStream([{ kind: "message", pieces }], options)

export const responsesToolCall = (
  callId: string,
  name: string,
  argsPieces: ReadonlyArray<string>,
  options?: ResponsesOptions
): Sse => responsesStream([{ kind: "function_call", callId, name, argsPieces }], options)

/** A reasoning item with its summary streamed, then a message. */
export const responsesReasoning = (
  summaryPieces: ReadonlyArray<string>,
  textPieces: ReadonlyArray<string>,
  options?: ResponsesOptions
): Sse => responsesStream([{ kind: "reasoning", summaryPieces }, { kind: "message", pieces: textPieces }], options)

/** OpenAI's error body, e.g. 401 `invalid_api_key`. */
export const openAiError = (status: number, message: string, type: string, code: string | null = null): Answer => ({
  kind: "json",
  status,
  body: { error: { message, type, param: null, code } }
})

// ---------------------------------------------------------------------------
// Messages API
// ---------------------------------------------------------------------------

export type MessagesBlock =
  | { readonly kind: "text"; readonly pieces: ReadonlyArray<string> }
  | {
    readonly kind: "tool_use"
    readonly id: string
    readonly name: string
    readonly jsonPieces: ReadonlyArray<string>
  }
  | { readonly kind: "thinking"; readonly pieces: ReadonlyArray<string>; readonly signature: string }

export interface MessagesOptions {
  readonly id?: string
  readonly model?: string
  readonly usage?: Usage
  readonly stopReason?: "end_turn" | "max_tokens" | "stop_sequence" | "tool_use"
}

const blockEvents = (block: MessagesBlock): [unknown, ReadonlyArray<Record<string, unknown>>] => {
  switch (block.kind) {
    case "text":
      return [{ type: "text", text: "" }, block.pieces.map((text) => ({ type: "text_delta", text }))]
    case "tool_use":
      return [
        { type: "tool_use", id: block.id, name: block.name, input: {} },
        // The API opens every tool input with an empty piece.
        ["", ...block.jsonPieces].map((partial_json) => ({ type: "input_json_delta", partial_json }))
      ]
    case "thinking":
      return [{ type: "thinking", thinking: "", signature: "" }, [
        ...block.pieces.map((thinking) => ({ type: "thinking_delta", thinking })),
        { type: "signature_delta", signature: block.signature }
      ]]
  }
}

/** A whole streamed message: `message_start` … `message_stop`, with a `ping` after the first block starts. */
export const messagesStream = (blocks: ReadonlyArray<MessagesBlock>, options: MessagesOptions = {}): Sse => {
  const u = options.usage ?? { input: 25, output: 15 }
  const events: Array<Record<string, unknown>> = [{
    type: "message_start",
    message: {
      id: options.id ?? "msg_01XFDUDYJgAACzvnptvVoYEL",
      type: "message",
      role: "assistant",
      model: options.model ?? "claude-sonnet-4-5-20250929",
      content: [],
      stop_reason: null,
      stop_sequence: null,
      usage: {
        input_tokens: u.input,
        cache_creation_input_tokens: 0,
        cache_read_input_tokens: u.cached ?? 0,
        cache_creation: { ephemeral_5m_input_tokens: 0, ephemeral_1h_input_tokens: 0 },
        output_tokens: 1,
        service_tier: "standard"
      }
    }
  }]
  blocks.forEach((block, index) => {
    const [content_block, deltas] = blockEvents(block)
    events.push({ type: "content_block_start", index, content_block })
    // The API pings once, after the first block starts.
    if (index === 0) events.push({ type: "ping" })
    for (const delta of deltas) events.push({ type: "content_block_delta", index, delta })
    events.push({ type: "content_block_stop", index })
  })
  const stop_reason = options.stopReason ?? (blocks.some((b) => b.kind === "tool_use") ? "tool_use" : "end_turn")
  events.push({
    type: "message_delta",
    delta: { stop_reason, stop_sequence: null },
    usage: { output_tokens: u.output }
  })
  events.push({ type: "message_stop" })
  return sse(events)
}

export const messagesText = (pieces: ReadonlyArray<string>, options?: MessagesOptions): Sse =>
  messagesStream([{ kind: "text", pieces }], options)

export const messagesToolUse = (
  id: string,
  name: string,
  jsonPieces: ReadonlyArray<string>,
  options?: MessagesOptions
): Sse => messagesStream([{ kind: "tool_use", id, name, jsonPieces }], options)

/** A thinking block (with its signature), then a text block. */
export const messagesThinking = (
  thinkingPieces: ReadonlyArray<string>,
  textPieces: ReadonlyArray<string>,
  options?: MessagesOptions & { readonly signature?: string }
): Sse =>
  messagesStream([
    { kind: "thinking", pieces: thinkingPieces, signature: options?.signature ?? "EqQBCgIYAhIM1gbcDa9GJwZA2b3h" },
    { kind: "text", pieces: textPieces }
  ], options)

/** Anthropic's error body, e.g. 401 `authentication_error`. */
export const anthropicError = (status: number, type: string, message: string): Answer => ({
  kind: "json",
  status,
  body: { type: "error", error: { type, message }, request_id: "req_011CSHoEeqs5C35K2UUqR7Fy" }
})

// ---------------------------------------------------------------------------
// Model lists
// ---------------------------------------------------------------------------

/** `GET /models` of OpenAI, Ollama's /v1, vLLM and llama.cpp. */
export const openAiModels = (ids: ReadonlyArray<string>): Answer => ({
  kind: "json",
  body: { object: "list", data: ids.map((id) => ({ id, object: "model", created: 1686935002, owned_by: "system" })) }
})

/** llama.cpp's own shape of `GET /models`. */
export const llamaCppModels = (names: ReadonlyArray<string>): Answer => ({
  kind: "json",
  body: { models: names.map((name) => ({ name, model: name, modified_at: "", size: "", digest: "", type: "model" })) }
})

/** One page of Anthropic's `GET /v1/models`. */
export const anthropicModels = (ids: ReadonlyArray<string>, hasMore = false): Answer => ({
  kind: "json",
  body: {
    data: ids.map((id) => ({ type: "model", id, display_name: id, created_at: "2025-09-29T00:00:00Z" })),
    has_more: hasMore,
    first_id: ids[0] ?? null,
    last_id: ids[ids.length - 1] ?? null
  }
})

/**
 * The request body of the Chat Completions API (`POST /chat/completions`),
 * built from what @effect/ai hands a provider: the prompt as `messages`,
 * the toolkit as `tools` with its `tool_choice`, and the model's settings.
 */
import type { LanguageModel, Prompt } from "@effect/ai"
import { Tool } from "@effect/ai"
import { Option } from "effect"
import type { ProviderSettings } from "./Settings.ts"

export interface ChatToolCall {
  readonly id: string
  readonly type: "function"
  readonly function: { readonly name: string; readonly arguments: string }
}

export type ChatMessage =
  | { readonly role: "system"; readonly content: string }
  | { readonly role: "user"; readonly content: string }
  | { readonly role: "assistant"; readonly content: string; readonly tool_calls?: ReadonlyArray<ChatToolCall> }
  | { readonly role: "tool"; readonly tool_call_id: string; readonly content: string }

export interface ChatTool {
  readonly type: "function"
  readonly function: { readonly name: string; readonly description?: string; readonly parameters: unknown }
}

export type ChatToolChoice = "auto" | "none" | "required" | {
  readonly type: "function"
  readonly function: { readonly name: string }
}

export interface ChatRequestBody {
  readonly model: string
  readonly messages: ReadonlyArray<ChatMessage>
  readonly stream: true
  readonly stream_options: { readonly include_usage: true }
  readonly max_tokens?: number
  readonly temperature?: number
  readonly tools?: ReadonlyArray<ChatTool>
  readonly tool_choice?: ChatToolChoice
}

/** The text parts of a message, joined. */
const textOf = (parts: ReadonlyArray<{ readonly type: string }>, separator: string): string =>
  parts.flatMap((part) => part.type === "text" ? [(part as Prompt.TextPart).text] : []).join(separator)

/**
 * The prompt as Chat Completions messages. Reasoning, files and the results
 * of provider-executed tools have no place in this API and are left out.
 */
export const toMessages = (prompt: Prompt.Prompt): Array<ChatMessage> =>
  prompt.content.flatMap((message): Array<ChatMessage> => {
    switch (message.role) {
      case "system":
        return [{ role: "system", content: message.content }]
      case "user":
        return [{ role: "user", content: textOf(message.content, "\n") }]
      case "assistant": {
        const calls = message.content.flatMap((part): Array<ChatToolCall> =>
          part.type === "tool-call"
            ? [{
              id: part.id,
              type: "function",
              function: { name: part.name, arguments: JSON.stringify(part.params ?? {}) }
            }]
            : []
        )
        const content = textOf(message.content, "")
        return [calls.length > 0 ? { role: "assistant", content, tool_calls: calls } : { role: "assistant", content }]
      }
      case "tool":
        return message.content.map((part) => ({
          role: "tool",
          tool_call_id: part.id,
          // A failure is sent like a success: the model reads whatever the tool answered.
          content: JSON.stringify(part.result ?? null)
        }))
    }
  })

const toTool = (tool: Tool.Any): ChatTool => {
  const description = Tool.getDescription(tool as any)
  return {
    type: "function",
    function: {
      name: tool.name,
      ...(description === undefined ? {} : { description }),
      parameters: Tool.getJsonSchema(tool as any)
    }
  }
}

/** `tools` and `tool_choice`, or nothing when the model is offered no tool. */
export const toTools = (
  options: Pick<LanguageModel.ProviderOptions, "tools" | "toolChoice">
): Pick<ChatRequestBody, "tools" | "tool_choice"> => {
  const choice = options.toolChoice
  const offered = options.tools.filter(Tool.isUserDefined)
  const tools = typeof choice === "object" && "oneOf" in choice
    ? offered.filter((tool) => choice.oneOf.includes(tool.name))
    : offered
  if (tools.length === 0) return {}
  const tool_choice: ChatToolChoice = typeof choice === "string"
    ? choice
    : "tool" in choice
    ? { type: "function", function: { name: choice.tool } }
    : choice.mode === "required"
    ? "required"
    : "auto"
  return { tools: tools.map(toTool), tool_choice }
}

export const makeBody = (settings: ProviderSettings, options: LanguageModel.ProviderOptions): ChatRequestBody => ({
  model: settings.model,
  messages: toMessages(options.prompt),
  stream: true,
  stream_options: { include_usage: true },
  ...Option.match(settings.maxOutputTokens, { onNone: () => ({}), onSome: (max_tokens) => ({ max_tokens }) }),
  ...Option.match(settings.temperature, { onNone: () => ({}), onSome: (temperature) => ({ temperature }) }),
  ...toTools(options)
})

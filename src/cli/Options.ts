/**
 * The command line's arguments: `agent-chat <command> [options]`, parsed
 * with node:util, and the server's addresses and token they name.
 */
import { Config, Option } from "effect"
import { parseArgs } from "node:util"

export const USAGE = `Usage:
  agent-chat chat [--message TEXT] [--thread ID] [--json]   chat in a thread (a new one by default)
  agent-chat threads [--json]                               the threads you belong to
  agent-chat history THREAD [--json]                        a thread's stored events

Options:
  --url URL       the server's WebSocket endpoint (default ws://localhost:8080/ws, or AGENT_CHAT_URL)
  --token JWT     the access token (or AGENT_CHAT_TOKEN)
  --user NAME     in development: fetch a dev token for NAME instead
  --thread ID     chat in this thread (its past is printed first)
  --message TEXT  send one message, print its run, exit: 0 completed, 1 failed, 130 cancelled
  --json          raw events, one JSON object per line, for scripts
  -h, --help      this text

In a chat, Ctrl-C cancels the run in progress; a second Ctrl-C quits.`

export class UsageError extends Error {}

export interface Options {
  readonly command: "chat" | "threads" | "history"
  readonly wsUrl: string
  readonly httpUrl: string
  readonly token: string | undefined
  readonly user: string | undefined
  readonly thread: string | undefined
  readonly message: string | undefined
  readonly json: boolean
  readonly help: boolean
}

/** http(s)://host of a ws(s)://host/ws URL. */
export const httpOf = (wsUrl: string) => {
  const url = new URL(wsUrl)
  if (url.protocol !== "ws:" && url.protocol !== "wss:") {
    throw new UsageError(`--url must be ws:// or wss://, not ${wsUrl}`)
  }
  url.protocol = url.protocol === "wss:" ? "https:" : "http:"
  url.pathname = url.pathname.replace(/\/ws\/?$/, "") || "/"
  url.search = ""
  return url.toString().replace(/\/$/, "")
}

/** The defaults the environment gives `--url` and `--token`. */
export interface Defaults {
  readonly url: Option.Option<string>
  readonly token: Option.Option<string>
}

export const defaults: Config.Config<Defaults> = Config.all({
  url: Config.option(Config.string("AGENT_CHAT_URL")),
  token: Config.option(Config.string("AGENT_CHAT_TOKEN"))
})

export const parseOptions = (argv: ReadonlyArray<string>, env: Defaults): Options => {
  let parsed
  try {
    parsed = parseArgs({
      args: [...argv],
      allowPositionals: true,
      options: {
        url: { type: "string" },
        token: { type: "string" },
        user: { type: "string" },
        thread: { type: "string" },
        message: { type: "string" },
        json: { type: "boolean", default: false },
        help: { type: "boolean", short: "h", default: false }
      }
    })
  } catch (error) {
    throw new UsageError(error instanceof Error ? error.message : String(error))
  }
  const { positionals, values } = parsed
  const [name = "chat", ...rest] = positionals
  if (name !== "chat" && name !== "threads" && name !== "history") throw new UsageError(`unknown command "${name}"`)
  if (name === "history" && rest.length !== 1) throw new UsageError("history takes one THREAD id")
  if (name !== "history" && rest.length > 0) throw new UsageError(`unexpected argument "${rest[0]}"`)
  if (values.message !== undefined && values.message.trim() === "") throw new UsageError("--message is empty")
  const wsUrl = values.url ?? Option.getOrElse(env.url, () => "ws://localhost:8080/ws")
  const token = values.token ?? Option.getOrUndefined(env.token)
  if (!values.help && token === undefined && values.user === undefined) {
    throw new UsageError("give --token JWT (or AGENT_CHAT_TOKEN), or --user NAME in development")
  }
  return {
    command: name,
    wsUrl,
    httpUrl: httpOf(wsUrl),
    token,
    user: values.user,
    thread: name === "history" ? rest[0] : values.thread,
    message: values.message,
    json: values.json,
    help: values.help
  }
}

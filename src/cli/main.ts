/**
 * `agent-chat`, the command line (README, "Command line"): an interactive
 * chat that prints each run live, a one-shot `--message` whose exit code
 * is the run's outcome, `--json` for scripts, and the `threads` and
 * `history` listings. Everything goes through the typed SDK, and the
 * listings through the HTTP API.
 */
import { Effect } from "effect"
import { createInterface } from "node:readline"
import { type AgentChatClient, connect, type Run, type Thread, type ThreadEvent } from "../client/index.ts"
import { defaults, type Options, parseOptions, USAGE, UsageError } from "./Options.ts"
import { Renderer } from "./Render.ts"

/** Exit codes: the run's outcome for `--message`, else why it stopped. */
const Exit = { ok: 0, failed: 1, usage: 2, unreachable: 3, refused: 4, cancelled: 130 } as const

class Refused extends Error {
  constructor(message: string, readonly code: number) {
    super(message)
  }
}

const devToken = async (options: Options, user: string) => {
  const response = await fetch(`${options.httpUrl}/api/dev/token`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ user_id: user })
  }).catch((error: Error) => {
    throw new Refused(`cannot reach ${options.httpUrl}: ${error.message}`, Exit.unreachable)
  })
  if (response.status === 404) {
    throw new Refused("this server gives no dev tokens (it is not in development): pass --token", Exit.refused)
  }
  if (!response.ok) {
    throw new Refused(`dev token refused: HTTP ${response.status} ${await response.text()}`, Exit.refused)
  }
  return (await response.json() as { readonly token: string }).token
}

const tokenOf = (options: Options) =>
  options.token !== undefined ? Promise.resolve(options.token) : devToken(options, options.user!)

/** GET on the HTTP API, as JSON; a refusal names its status and reason. */
const getJson = async (options: Options, token: string, path: string) => {
  const response = await fetch(`${options.httpUrl}${path}`, { headers: { authorization: `Bearer ${token}` } })
    .catch((error: Error) => {
      throw new Refused(`cannot reach ${options.httpUrl}: ${error.message}`, Exit.unreachable)
    })
  if (!response.ok) throw new Refused(`${path}: HTTP ${response.status} ${await response.text()}`, Exit.refused)
  return response.json() as Promise<Record<string, any>>
}

const threads = async (options: Options, print: (line: string) => void) => {
  const { threads: list } = await getJson(options, await tokenOf(options), "/api/threads")
  for (const thread of list as ReadonlyArray<Record<string, any>>) {
    print(options.json ? JSON.stringify(thread) : `${thread.thread_id}  ${thread.head_seq}  ${thread.title ?? ""}`)
  }
  return Exit.ok
}

const history = async (options: Options, print: (line: string) => void, renderer: Renderer) => {
  const token = await tokenOf(options)
  let after = 0
  for (;;) {
    const page = await getJson(
      options,
      token,
      `/api/threads/${encodeURIComponent(options.thread!)}/events?after_seq=${after}&limit=1000`
    )
    const events = page.events as ReadonlyArray<ThreadEvent>
    for (const event of events) {
      if (options.json) print(JSON.stringify(event))
      else renderer.event(event)
    }
    if (events.length < 1000) return Exit.ok
    after = events.at(-1)!.seq
  }
}

const outcome = (end: ThreadEvent) =>
  end.event_type === "agent_completed"
    ? Exit.ok
    : end.event_type === "agent_error" && end.data.code === "cancelled"
    ? Exit.cancelled
    : Exit.failed

const chat = async (options: Options, print: (line: string) => void, renderer: Renderer) => {
  const client: AgentChatClient = await connect({
    url: options.wsUrl,
    token: () => tokenOf(options),
    reconnect: { maxAttempts: 5 }
  }).catch((error: Error) => {
    throw new Refused(`cannot connect to ${options.wsUrl}: ${error.message}`, Exit.unreachable)
  })
  const thread: Thread = options.thread !== undefined
    ? await client.join(options.thread).catch((error: Error) => {
      client.close()
      throw new Refused(`thread ${options.thread}: ${error.message}`, Exit.refused)
    })
    : await client.createThread()
  const interactive = options.message === undefined
  // A one-shot prints its own run, not the thread's past (an interactive chat shows the past first).
  const since = interactive ? 0 : thread.headSeq
  thread.on((update) => {
    if (update.type !== "event" || update.seq <= since) return
    if (options.json) print(JSON.stringify(update))
    else renderer.event(update)
  })
  if (interactive && !options.json) renderer.note(`thread ${thread.id} (Ctrl-C cancels a run; twice quits)`)

  let current: Run | undefined
  let cancelling = false
  let quit: (code: number) => void = () => {}
  const finished = new Promise<number>((resolve) => quit = resolve)
  const interrupt = () => {
    if (current !== undefined && !cancelling) {
      cancelling = true
      if (!options.json) renderer.note("cancelling… (Ctrl-C again quits)")
      current.cancel().catch(() => undefined)
    } else {
      quit(Exit.cancelled)
    }
  }
  process.on("SIGINT", interrupt)

  const run = async (content: string) => {
    cancelling = false
    current = await thread.send(content)
    const end = await current.done
    current = undefined
    return outcome(end)
  }

  if (!interactive) {
    run(options.message!).then(quit, (error: Error) => {
      print(`error: ${error.message}`)
      quit(Exit.refused)
    })
  } else {
    const lines = createInterface({ input: process.stdin, terminal: process.stdin.isTTY === true })
    lines.on("SIGINT", interrupt)
    lines.on("close", () => {
      // End of input: the run in progress finishes first.
      const waiting = current
      if (waiting === undefined) quit(Exit.ok)
      else waiting.done.then(() => quit(Exit.ok), () => quit(Exit.ok))
    })
    let queue = Promise.resolve()
    lines.on("line", (line) => {
      const content = line.trim()
      if (content === "") return
      queue = queue.then(() =>
        run(content).then(() => undefined, (error: Error) => renderer.note(`error: ${error.message}`))
      )
    })
  }
  const code = await finished
  client.close()
  return code
}

export const main = async (argv: ReadonlyArray<string>): Promise<number> => {
  const print = (line: string) => process.stdout.write(`${line}\n`)
  let options: Options
  try {
    options = parseOptions(argv, await Effect.runPromise(defaults))
  } catch (error) {
    if (!(error instanceof UsageError)) throw error
    process.stderr.write(`agent-chat: ${error.message}\n\n${USAGE}\n`)
    return Exit.usage
  }
  if (options.help) {
    print(USAGE)
    return Exit.ok
  }
  const renderer = new Renderer(
    { write: (text) => process.stdout.write(text), color: process.stdout.isTTY === true },
    options.user
  )
  try {
    if (options.command === "threads") return await threads(options, print)
    if (options.command === "history") return await history(options, print, renderer)
    return await chat(options, print, renderer)
  } catch (error) {
    if (!(error instanceof Refused)) throw error
    process.stderr.write(`agent-chat: ${error.message}\n`)
    return error.code
  }
}

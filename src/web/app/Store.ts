/**
 * What survives a reload, in sessionStorage (this tab only): how the user signed in (the dev user
 * name, or a pasted token), the open thread, and that thread's events as rendered, so a reload
 * renders them again and rejoins after the last one's `seq`: nothing missing, nothing twice.
 */
import type { ThreadEvent } from "../../client/index.ts"

export type Login = { readonly kind: "dev"; readonly name: string } | { readonly kind: "token"; readonly token: string }

const LOGIN = "agent-chat.login"
const THREAD = "agent-chat.thread"
const EVENTS = "agent-chat.events"

const read = <A>(key: string): A | undefined => {
  try {
    const text = sessionStorage.getItem(key)
    return text === null ? undefined : JSON.parse(text) as A
  } catch {
    return undefined
  }
}

const write = (key: string, value: unknown) => {
  try {
    if (value === undefined) sessionStorage.removeItem(key)
    else sessionStorage.setItem(key, JSON.stringify(value))
  } catch {
    // Storage full or refused: the next reload replays from the server instead.
    sessionStorage.removeItem(key)
  }
}

export const loadLogin = (): Login | undefined => read<Login>(LOGIN)
export const saveLogin = (login: Login | undefined) => write(LOGIN, login)
export const loadThread = (): string | undefined => read<string>(THREAD)
export const saveThread = (id: string | undefined) => write(THREAD, id)

export interface Cached {
  readonly thread_id: string
  /** The thread's last `seq` seen (events of a type this page does not know count, unrendered). */
  readonly last_seq: number
  readonly events: ReadonlyArray<ThreadEvent>
}

/** The cached events of `threadId` and the `seq` to resume after (0 and none when there is no usable cache). */
export const loadEvents = (
  threadId: string
): { readonly lastSeq: number; readonly events: ReadonlyArray<ThreadEvent> } => {
  const cached = read<Cached>(EVENTS)
  const none = { lastSeq: 0, events: [] }
  if (cached === undefined || cached.thread_id !== threadId || !Array.isArray(cached.events)) return none
  if (typeof cached.last_seq !== "number") return none
  const ordered = cached.events.every((e, i) => i === 0 || e.seq > cached.events[i - 1]!.seq)
  const last = cached.events.at(-1)?.seq ?? 0
  return ordered && last <= cached.last_seq ? { lastSeq: cached.last_seq, events: cached.events } : none
}

let timer: ReturnType<typeof setTimeout> | undefined
let latest: (() => Cached) | undefined

const flush = () => {
  clearTimeout(timer)
  timer = undefined
  if (latest !== undefined) write(EVENTS, latest())
  latest = undefined
}
addEventListener("pagehide", flush)

/** Keeps the thread's events, as `snapshot` gives them a moment later (and when the page goes away). */
export const saveEvents = (snapshot: () => Cached) => {
  latest = snapshot
  if (timer === undefined) timer = setTimeout(flush, 100)
}

export const clearEvents = () => {
  clearTimeout(timer)
  timer = undefined
  latest = undefined
  write(EVENTS, undefined)
}

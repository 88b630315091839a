/**
 * The web page's app: every frame goes through the typed SDK (src/client): connecting with a token
 * provider, reconnecting and rejoining after the last `seq`, runs, cancels, members and presence.
 * The page adds what a person needs: sign-in that survives a reload (with the open thread resumed
 * after its last `seq`), why a connection fails, safe markdown, and a view that follows new output.
 */
import { type AgentChatClient, type ClientEvent, connect, type ThreadEvent } from "../../client/index.ts"
import type { Thread } from "../../client/index.ts"
import { diagnose } from "./Diagnose.ts"
import { setMarkdown } from "./Markdown.ts"
import * as Store from "./Store.ts"

const $ = <E extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as E
const input = (id: string) => $<HTMLInputElement>(id)

interface ThreadSummary {
  readonly thread_id: string
  readonly title: string | null
  readonly head_seq: number
}

interface Bubble {
  readonly el: HTMLElement
  readonly meta: HTMLElement
  readonly deltas: HTMLElement
}

const state = {
  client: undefined as AgentChatClient | undefined,
  login: undefined as Store.Login | undefined,
  /** The token of the connection, for the HTTP API too. */
  token: undefined as string | undefined,
  generation: 0,
  threadId: undefined as string | undefined,
  thread: undefined as Thread | undefined,
  lastSeq: 0,
  events: [] as Array<ThreadEvent>,
  list: [] as Array<ThreadSummary>,
  members: [] as Array<string>,
  sidebarOpen: true,
  probe: undefined as ReturnType<typeof setInterval> | undefined,
  retry: undefined as ReturnType<typeof setTimeout> | undefined
}
let view = { runs: new Map<string, Bubble>(), tools: new Map<string, HTMLElement>(), active: null as string | null }

const el = (tag: string, cls?: string, text?: string) => {
  const e = document.createElement(tag)
  if (cls !== undefined && cls !== "") e.className = cls
  if (text !== undefined) e.textContent = text
  return e
}
const setStatus = (text: string) => $("status").textContent = text
const setConn = (text: string, cls = "") => {
  $("conn").textContent = text
  $("conn").className = `pill ${cls}`
}
const isOpen = () => state.client?.state === "open"
const message = (error: unknown) => error instanceof Error ? error.message : String(error)
const wsUrl = () => `${location.protocol === "https:" ? "wss:" : "ws:"}//${location.host}/ws`
const api = (path: string) => fetch(path, { headers: { authorization: `Bearer ${state.token ?? ""}` } })

// ---------------------------------------------------------------- signing in

class DevTokensOff extends Error {}

const fetchDevToken = async (name: string): Promise<string> => {
  const res = await fetch("/api/dev/token", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ user_id: name })
  })
  if (res.status === 404) throw new DevTokensOff("dev tokens are only available in development mode")
  if (!res.ok) {
    const body = await res.json().catch(() => ({})) as { readonly reason?: string }
    throw new Error(`the dev token was refused: ${body.reason ?? `HTTP ${res.status}`}`)
  }
  return (await res.json() as { readonly token: string }).token
}

const showPaste = (text: string) => {
  $("paste").hidden = false
  setStatus(text)
  input("tokenInput").focus()
}

const stop = () => {
  state.generation++
  clearInterval(state.probe)
  clearTimeout(state.retry)
  state.client?.close()
  state.client = undefined
  state.thread = undefined
  updateControls()
}

const start = async (login: Store.Login, attempt = 0): Promise<void> => {
  stop()
  const generation = state.generation
  const current = () => generation === state.generation
  state.login = login
  setConn("connecting…")
  let first: string
  try {
    first = login.kind === "dev" ? await fetchDevToken(login.name) : login.token
  } catch (error) {
    if (!current()) return
    setConn("disconnected")
    if (error instanceof DevTokensOff) {
      return showPaste("Dev tokens are only available in development mode: paste a token instead.")
    }
    setStatus(`Cannot connect: ${message(error)}`)
    return
  }
  state.token = first
  let fresh: string | undefined = first
  const provider = async () => {
    if (fresh !== undefined) {
      const token = fresh
      fresh = undefined
      return token
    }
    const token = login.kind === "dev" ? await fetchDevToken(login.name) : login.token
    state.token = token
    return token
  }
  try {
    const client = await connect({ url: wsUrl(), token: provider, reconnect: { maxDelayMs: 5_000 } })
    if (!current()) return client.close()
    state.client = client
    Store.saveLogin(login)
    client.on((event) => current() && onClientEvent(event))
    connected(client)
    $("paste").hidden = true
    await loadThreads()
    const saved = Store.loadThread()
    if (saved !== undefined && current()) await openThread(saved)
  } catch (error) {
    if (!current()) return
    setConn("not connected", "closed")
    const why = await diagnose(state.token)
    if (!current()) return
    if (why.kind === "token_refused") {
      Store.saveLogin(undefined)
      if (login.kind === "token") return showPaste(`${why.text} Paste another token.`)
      return void setStatus(why.text)
    }
    const delay = Math.min(10_000, 1_000 * 2 ** attempt)
    setStatus(`${why.text.replace(/; retrying\.$|\.$/, "")} (retrying in ${Math.round(delay / 1000)} s).`)
    state.retry = setTimeout(() => void start(login, attempt + 1), delay)
    void error
  }
}

const connected = (client: AgentChatClient) => {
  clearInterval(state.probe)
  state.probe = undefined
  setConn("connected", "open")
  setStatus("")
  $("who").textContent = `as ${client.userId}`
  $("signOut").hidden = false
  updateControls()
}

/** While the SDK reconnects, what is wrong is asked over HTTP and shown, not left as a silent loop. */
const probeWhileDown = () => {
  clearInterval(state.probe)
  const generation = state.generation
  const once = async () => {
    if (generation !== state.generation || isOpen()) return clearInterval(state.probe)
    const why = await diagnose(state.token)
    if (generation !== state.generation || isOpen()) return
    setStatus(why.text)
    if (why.kind === "token_refused" && state.login?.kind === "token") {
      stop()
      Store.saveLogin(undefined)
      setConn("disconnected", "closed")
      showPaste(`${why.text} Paste another token.`)
    }
  }
  void once()
  state.probe = setInterval(() => void once(), 3_000)
}

const onClientEvent = (event: ClientEvent) => {
  switch (event.type) {
    case "connected":
      if (event.reconnected && state.client !== undefined) {
        connected(state.client)
        void loadThreads()
        void loadMembers()
      }
      return
    case "disconnected":
      updateControls()
      if (event.reconnecting) {
        setConn("reconnecting…", "closed")
        setStatus(`Connection lost (${event.code}${event.reason ? `: ${event.reason}` : ""}); reconnecting…`)
        probeWhileDown()
      } else {
        setConn(`closed ${event.code}`, "closed")
        setStatus(`Connection closed (${event.code}${event.reason ? `: ${event.reason}` : ""}). Connect again.`)
      }
      return
    case "token_refresh_failed":
      setStatus(`The token could not be refreshed: ${message(event.error)}`)
      return
    case "presence":
      if (event.thread_id === state.threadId) renderMembers()
      return
    case "gap":
      return
    case "event":
      if (event.thread_id === state.threadId) onEvent(event)
      return
  }
}

// ---------------------------------------------------------------- threads

const loadThreads = async () => {
  try {
    const res = await api("/api/threads")
    if (!res.ok) throw new Error(`the thread list: HTTP ${res.status}`)
    state.list = (await res.json() as { readonly threads: Array<ThreadSummary> }).threads
    renderThreads()
  } catch (error) {
    setStatus(message(error))
  }
}

const renderThreads = () => {
  const box = $("threads")
  box.replaceChildren()
  for (const t of state.list) {
    const b = el("button", t.thread_id === state.threadId ? "current" : "", t.title ?? t.thread_id)
    b.setAttribute("type", "button")
    b.title = `${t.thread_id} · ${t.head_seq} events`
    if (t.thread_id === state.threadId) b.setAttribute("aria-current", "true")
    b.onclick = () => void openThread(t.thread_id)
    box.append(b)
  }
  if (state.list.length === 0) box.append(el("span", "meta", state.client ? "No threads yet." : "Connect first."))
}

const setSidebar = (open: boolean) => {
  state.sidebarOpen = open
  $("sidebar").classList.toggle("collapsed", !open)
  $("toggleThreads").setAttribute("aria-expanded", String(open))
}

const openThread = async (id: string) => {
  const client = state.client
  if (client === undefined || (state.threadId === id && state.thread !== undefined)) return
  const old = state.thread
  state.thread = undefined
  if (old !== undefined) void old.leave().catch(() => {})
  if (state.threadId !== id) Store.clearEvents()
  state.threadId = id
  Store.saveThread(id)
  const cached = Store.loadEvents(id)
  state.events = [...cached.events]
  state.lastSeq = cached.lastSeq
  state.members = []
  renderThreads()
  renderThreadView()
  try {
    const thread = await client.join(id, { afterSeq: state.lastSeq })
    if (state.threadId !== id) return
    state.thread = thread
    updateControls()
    setSidebar(false)
    await loadMembers()
  } catch (error) {
    if (state.threadId !== id) return
    setStatus(`Cannot open the thread: ${message(error)}`)
    closeThread()
  }
}

const closeThread = () => {
  state.threadId = undefined
  state.thread = undefined
  state.events = []
  state.lastSeq = 0
  Store.saveThread(undefined)
  Store.clearEvents()
  renderThreads()
  renderThreadView()
  setSidebar(true)
}

// ---------------------------------------------------------------- members and presence

const loadMembers = async () => {
  const id = state.threadId
  if (id === undefined) return
  try {
    const res = await api(`/api/threads/${encodeURIComponent(id)}`)
    if (!res.ok) throw new Error(`the thread's members: HTTP ${res.status}`)
    const details = await res.json() as { readonly members: Array<string> }
    if (state.threadId === id) state.members = details.members
  } catch (error) {
    setStatus(message(error))
  }
  renderMembers()
}

const renderMembers = () => {
  const box = $("memberList")
  $("members").hidden = state.threadId === undefined
  box.replaceChildren()
  const online = new Set(state.thread?.online ?? [])
  const me = state.client?.userId
  for (const member of state.members) {
    const li = el("li")
    const on = online.has(member)
    const dot = el("span", on ? "dot on" : "dot")
    dot.setAttribute("aria-hidden", "true")
    const name = el("span", "name", member + (member === me ? " (you)" : ""))
    const status = el("span", "sr-only", on ? " online" : " offline")
    li.dataset.member = member
    li.dataset.online = String(on)
    li.append(dot, name, status)
    if (member !== me) {
      const remove = el("button", "", "Remove")
      remove.setAttribute("type", "button")
      remove.setAttribute("aria-label", `Remove ${member}`)
      remove.onclick = () => void members("remove", member)
      li.append(remove)
    }
    box.append(li)
  }
}

const members = async (change: "add" | "remove", user: string) => {
  const thread = state.thread
  if (thread === undefined || user === "") return
  try {
    await (change === "add" ? thread.addMembers([user]) : thread.removeMembers([user]))
    setStatus("")
    if (change === "add") input("inviteName").value = ""
  } catch (error) {
    setStatus(`Cannot ${change === "add" ? "invite" : "remove"} ${user}: ${message(error)}`)
  }
}

// ---------------------------------------------------------------- the thread's events

const log = () => $("log")
/** The view follows new output while the reader is at the bottom; scrolled up, he gets a marker instead. */
const atBottom = () => log().scrollHeight - log().scrollTop - log().clientHeight < 40
const follow = (stick: boolean) => {
  if (stick) {
    log().scrollTop = log().scrollHeight
    $("newer").hidden = true
  } else $("newer").hidden = false
}

const onEvent = (event: ThreadEvent) => {
  if (event.seq <= state.lastSeq) return
  state.lastSeq = event.seq
  state.events.push(event)
  const id = state.threadId!
  Store.saveEvents(() => ({ thread_id: id, last_seq: state.lastSeq, events: state.events }))
  const stick = atBottom()
  render(event)
  follow(stick)
  if (event.event_type === "members_changed") {
    if (event.data.removed.includes(state.client?.userId ?? "")) {
      setStatus(`${event.data.by} removed you from this thread.`)
      closeThread()
      void loadThreads()
    } else void loadMembers()
  }
}

const add = (cls: string, meta: string | null, seq: number) => {
  const item = el("div", cls)
  item.dataset.seq = String(seq)
  if (meta !== null) item.append(el("span", "meta", meta))
  log().append(item)
  return item
}

const labelled = (parent: HTMLElement, label: string, value: unknown, seq?: number) => {
  const box = el("div")
  if (seq !== undefined) box.dataset.seq = String(seq)
  box.append(
    el("span", "meta", label),
    el("pre", "", typeof value === "string" ? value : JSON.stringify(value, null, 2))
  )
  parent.append(box)
}

const bubble = (runId: string) => {
  let b = view.runs.get(runId)
  if (b === undefined) {
    const e = el("div", "ev streaming")
    e.setAttribute("aria-busy", "true")
    const meta = el("span", "meta", "assistant")
    const deltas = el("div", "deltas")
    e.append(meta, deltas)
    log().append(e)
    b = { el: e, meta, deltas }
    view.runs.set(runId, b)
  }
  return b
}

const endRun = (runId: string | null) => {
  if (runId !== null) {
    const b = view.runs.get(runId)
    if (b !== undefined) {
      b.el.classList.remove("streaming")
      b.el.removeAttribute("aria-busy")
    }
  }
  if (view.active === runId) view.active = null
  updateControls()
}

const renderThreadView = () => {
  view = { runs: new Map(), tools: new Map(), active: null }
  log().replaceChildren()
  if (state.threadId === undefined) log().append(el("div", "muted", "Pick a thread or create one."))
  else for (const event of state.events) render(event)
  follow(true)
  renderMembers()
  updateControls()
}

const render = (ev: ThreadEvent) => {
  const time = new Date(ev.timestamp).toLocaleTimeString()
  switch (ev.event_type) {
    case "message_created": {
      const item = add("ev user", `${ev.data.user_id} · ${time}`, ev.seq)
      const body = el("div", "md")
      setMarkdown(body, ev.data.content)
      item.append(body)
      break
    }
    case "agent_started":
      view.active = ev.run_id
      add("muted", null, ev.seq).append(`${ev.data.agent ?? "agent"} started · ${time}`)
      updateControls()
      break
    case "agent_thinking":
      add("ev muted", null, ev.seq).append(ev.data.text)
      break
    case "tool_executing": {
      const item = add("ev tool", `tool ${ev.data.tool} · running…`, ev.seq)
      labelled(item, "input", ev.data.input)
      view.tools.set(ev.data.tool_call_id, item)
      break
    }
    case "tool_completed": {
      const data = ev.data
      const item = view.tools.get(data.tool_call_id) ?? add("ev tool", "", ev.seq)
      const failed = "error" in data
      item.querySelector(".meta")!.textContent = `tool ${data.tool} · ${data.duration_ms} ms${
        failed ? " · failed" : ""
      }`
      if ("error" in data) {
        item.classList.add("err")
        labelled(item, "error", data.error, ev.seq)
      } else labelled(item, "output", data.output, ev.seq)
      break
    }
    case "agent_response_delta": {
      const piece = el("span", "", ev.data.delta)
      piece.dataset.seq = String(ev.seq)
      bubble(ev.run_id ?? "").deltas.append(piece)
      break
    }
    case "agent_completed": {
      const b = bubble(ev.run_id ?? "")
      const answer = el("div", "md answer")
      answer.dataset.seq = String(ev.seq)
      setMarkdown(answer, ev.data.response)
      b.deltas.hidden = true
      b.el.append(answer)
      b.meta.textContent = `assistant · ${time} · ${ev.data.duration_ms} ms`
      endRun(ev.run_id)
      break
    }
    case "agent_error":
      add("ev err", `agent error · ${ev.data.code}`, ev.seq).append(ev.data.message)
      endRun(ev.run_id)
      break
    case "members_changed": {
      const parts = [
        ev.data.added.length > 0 ? `${ev.data.added.join(", ")} added` : "",
        ev.data.removed.length > 0 ? `${ev.data.removed.join(", ")} removed` : ""
      ].filter((p) => p !== "")
      add("muted", null, ev.seq).append(`${parts.join("; ")} by ${ev.data.by} · ${time}`)
      break
    }
    default:
      add("muted", null, (ev as ThreadEvent).seq).append((ev as ThreadEvent).event_type)
  }
}

// ---------------------------------------------------------------- controls

const updateControls = () => {
  const ready = isOpen() && state.thread !== undefined
  $<HTMLTextAreaElement>("msg").disabled = !ready
  $<HTMLButtonElement>("send").disabled = !ready
  $<HTMLButtonElement>("inviteButton").disabled = !ready
  $("cancel").hidden = !(ready && view.active !== null)
  $<HTMLButtonElement>("cancel").disabled = false
}

const sendMessage = async () => {
  const thread = state.thread
  const box = $<HTMLTextAreaElement>("msg")
  const content = box.value
  if (thread === undefined || content.trim() === "") return
  if (content.length > 16_000) return void setStatus("A message is at most 16,000 characters.")
  try {
    await thread.send(content)
    if (box.value === content) box.value = ""
    setStatus("")
  } catch (error) {
    setStatus(`Not sent: ${message(error)}`)
  }
}

const cancelRun = async () => {
  const runId = view.active
  const client = state.client
  if (runId === null || client === undefined) return
  $<HTMLButtonElement>("cancel").disabled = true
  try {
    await client.request({ type: "cancel_run", run_id: runId })
    setStatus("Cancelling the run…")
  } catch (error) {
    setStatus(`Cannot cancel: ${message(error)}`)
    updateControls()
  }
}

$("login").onsubmit = (e) => {
  e.preventDefault()
  const name = input("name").value.trim() || "alice"
  Store.saveThread(undefined)
  Store.clearEvents()
  closeThread()
  void start({ kind: "dev", name })
}
$("paste").onsubmit = (e) => {
  e.preventDefault()
  const token = input("tokenInput").value.trim()
  if (token === "") return
  Store.saveThread(undefined)
  Store.clearEvents()
  closeThread()
  void start({ kind: "token", token })
}
$("signOut").onclick = () => {
  stop()
  Store.saveLogin(undefined)
  closeThread()
  state.list = []
  renderThreads()
  setConn("disconnected")
  $("who").textContent = ""
  $("signOut").hidden = true
  input("name").focus()
}
$("showPaste").onclick = () => {
  $("paste").hidden = false
  input("tokenInput").focus()
}
$("refresh").onclick = () => void (state.client && loadThreads())
$("newThread").onsubmit = async (e) => {
  e.preventDefault()
  const client = state.client
  if (client === undefined) return void setStatus("Connect first.")
  const title = input("title").value.trim()
  try {
    const ack = await client.request({ type: "create_thread", ...(title === "" ? {} : { title }) })
    input("title").value = ""
    await loadThreads()
    if (ack.thread_id !== undefined) await openThread(ack.thread_id)
    $("msg").focus()
  } catch (error) {
    setStatus(`Cannot create the thread: ${message(error)}`)
  }
}
$("invite").onsubmit = (e) => {
  e.preventDefault()
  void members("add", input("inviteName").value.trim())
}
$("toggleThreads").onclick = () => setSidebar(!state.sidebarOpen)
$("send").onclick = () => void sendMessage()
$("cancel").onclick = () => void cancelRun()
$("newer").onclick = () => follow(true)
log().onscroll = () => {
  if (atBottom()) $("newer").hidden = true
}
$("msg").onkeydown = (e) => {
  if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
    e.preventDefault()
    void sendMessage()
  }
}
document.addEventListener("keydown", (e) => {
  if (e.key === "Escape" && view.active !== null && !$("cancel").hidden) {
    e.preventDefault()
    void cancelRun()
  }
})

renderThreads()
renderThreadView()
const saved = Store.loadLogin()
if (saved !== undefined) {
  if (saved.kind === "dev") input("name").value = saved.name
  state.threadId = Store.loadThread()
  void start(saved)
}

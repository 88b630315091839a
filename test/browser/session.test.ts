/**
 * The page's session and safety, in a real Chromium against a real server: a reload mid-run
 * resumes the thread after its last `seq` (every event rendered once, by its `data-seq`), two
 * users in one thread (one invited from the page, presence shown, then removed),
 * a refused token or a draining server says why, and markdown with HTML in it runs nothing.
 */
import { expect, it } from "@effect/vitest"
import { Effect } from "effect"
import type { Page } from "playwright-core"
import { Readiness } from "../../src/domain/Health.ts"
import { ask, browser, openPage, screenshot, server, signIn, startThread } from "../utils/Browser.ts"
import { delta, Gate, gatedModel, scriptedModel } from "../utils/Models.ts"
import { service } from "../utils/TestServer.ts"

/** The `seq`s rendered in the log, in document order. */
const renderedSeqs = (page: Page) =>
  Effect.promise(() =>
    page.locator("#log [data-seq]").evaluateAll((items) => items.map((item) => Number(item.getAttribute("data-seq"))))
  )

const storedThread = (page: Page) =>
  Effect.promise(() => page.evaluate(() => JSON.parse(sessionStorage.getItem("agent-chat.thread") ?? "null") as string))

it.scopedLive(
  "a reload mid-run resumes after the last seq: every event shown once, none missing",
  () =>
    Effect.gen(function*() {
      const gate = new Gate()
      const chat = yield* server({ model: gatedModel(gate, 6) })
      const page = yield* openPage(yield* browser, chat.httpUrl)
      yield* startThread(page, "alice")
      yield* ask(page, "take your time")
      gate.allow(2)
      yield* Effect.promise(() => page.getByText("part2").waitFor())
      // The cache is written a moment after each event.
      yield* Effect.promise(() =>
        page.waitForFunction(() => (JSON.parse(sessionStorage.getItem("agent-chat.events") ?? "{}").last_seq ?? 0) >= 4)
      )
      const threadId = yield* storedThread(page)
      const joins: Array<number> = []
      page.on("websocket", (ws) =>
        ws.on("framesent", ({ payload }) => {
          const frame = JSON.parse(String(payload)) as { type: string; after_seq?: number }
          if (frame.type === "join_thread") joins.push(frame.after_seq ?? 0)
        }))
      yield* Effect.promise(() => page.reload({ waitUntil: "domcontentloaded" }))
      // Two pieces stream while the page is away or coming back: the rejoin replays them.
      gate.allow(2)
      yield* Effect.promise(() => page.getByText("as alice").waitFor())
      yield* Effect.promise(() => page.getByText("part4").waitFor())
      expect(yield* storedThread(page)).toBe(threadId)
      // Rejoined after what it had rendered, not from the start.
      expect(joins[0]).toBeGreaterThanOrEqual(4)
      yield* Effect.promise(() => page.getByRole("button", { name: "Cancel run" }).waitFor({ state: "visible" }))
      gate.allow(2)
      yield* Effect.promise(() => page.getByText(/assistant · .* ms/).waitFor())
      const details = yield* Effect.promise(() =>
        chat.fetch(`/api/threads/${threadId}`, { userId: "alice" }).then((r) =>
          r.json() as Promise<{ head_seq: number }>
        )
      )
      const seqs = yield* renderedSeqs(page)
      expect(seqs).toEqual(Array.from({ length: details.head_seq }, (_, i) => i + 1))
      const answer = yield* Effect.promise(() => page.locator(".answer").innerText())
      expect(answer.trim()).toBe("part1 part2 part3 part4 part5 part6")
      const streamed = yield* Effect.promise(() => page.locator(".deltas").textContent())
      expect(streamed).toBe("part1 part2 part3 part4 part5 part6 ")
      yield* screenshot(page, "session-reloaded")
    }),
  60_000
)

it.scopedLive(
  "two users in one thread: bob invited from the page, shown online, then removed",
  () =>
    Effect.gen(function*() {
      const chat = yield* server()
      const chromium = yield* browser
      const alice = yield* openPage(chromium, chat.httpUrl)
      yield* startThread(alice, "alice")
      yield* Effect.promise(async () => {
        await alice.getByLabel("user to invite").fill("bob")
        await alice.getByRole("button", { name: "Invite" }).click()
        await alice.locator("#memberList li[data-member=bob][data-online=false]").waitFor()
        await alice.getByText("bob added by alice").waitFor()
      })
      const threadId = yield* storedThread(alice)
      const bob = yield* openPage(chromium, chat.httpUrl)
      yield* signIn(bob, "bob")
      yield* Effect.promise(async () => {
        await bob.locator("#threads button", { hasText: threadId }).click()
        await bob.locator("#msg:not([disabled])").waitFor()
        await alice.locator("#memberList li[data-member=bob][data-online=true]").waitFor()
        await bob.locator("#memberList li[data-member=alice][data-online=true]").waitFor()
      })
      yield* ask(bob, "what is 12 * (3 + 4)?")
      yield* Effect.promise(async () => {
        await alice.getByText(/^bob · /).waitFor()
        await alice.getByText(/assistant · .* ms/).waitFor()
      })
      expect(yield* Effect.promise(() => alice.locator(".answer").innerText())).toContain("84")
      yield* screenshot(alice, "session-two-users-alice")
      yield* screenshot(bob, "session-two-users-bob")
      yield* Effect.promise(async () => {
        await alice.getByRole("button", { name: "Remove bob" }).click()
        await alice.locator("#memberList li[data-member=bob]").waitFor({ state: "detached" })
        await bob.getByText("alice removed you from this thread.").waitFor()
      })
      expect(yield* Effect.promise(() => bob.locator("#msg").isDisabled())).toBe(true)
    }),
  60_000
)

it.scopedLive("a refused token says so, instead of reconnecting in silence", () =>
  Effect.gen(function*() {
    const chat = yield* server()
    const page = yield* openPage(yield* browser, chat.httpUrl)
    yield* Effect.promise(async () => {
      await page.getByRole("button", { name: "Use a token" }).click()
      await page.locator("#tokenInput").fill("not-a-token")
      await page.getByRole("button", { name: "Use token" }).click()
      await page.getByRole("alert").getByText(/token refused/).waitFor()
    })
    expect(yield* Effect.promise(() => page.locator("#paste").isVisible())).toBe(true)
    yield* screenshot(page, "session-token-refused")
  }), 60_000)

it.scopedLive("a draining server says so", () =>
  Effect.gen(function*() {
    const chat = yield* server()
    yield* service(chat, Readiness).set("draining")
    const page = yield* openPage(yield* browser, chat.httpUrl)
    yield* signIn(page, "alice").pipe(Effect.timeout("1 second"), Effect.ignore)
    yield* Effect.promise(() => page.getByRole("alert").getByText(/the server is draining/).waitFor())
    yield* screenshot(page, "session-draining")
  }), 60_000)

it.scopedLive("markdown with HTML in it renders as text: no element, nothing runs", () =>
  Effect.gen(function*() {
    const evil = `**bold** <img src=x onerror="window.__pwned=1"> <script>window.__pwned=2</script> ` +
      `[link](javascript:window.__pwned=3) <a href="javascript:window.__pwned=4" onclick="window.__pwned=5">a</a>`
    const chat = yield* server({ model: scriptedModel(() => [delta(`answer: ${evil}`)]) })
    const page = yield* openPage(yield* browser, chat.httpUrl)
    yield* startThread(page, "alice")
    yield* ask(page, evil)
    yield* Effect.promise(() => page.getByText(/assistant · .* ms/).waitFor())
    const found = yield* Effect.promise(() =>
      page.evaluate(() => ({
        pwned: (window as { __pwned?: unknown }).__pwned,
        images: document.querySelectorAll("#log img").length,
        scripts: document.querySelectorAll("#log script").length,
        handlers: Array.from(document.querySelectorAll("#log *")).filter((e) =>
          Array.from(e.attributes).some((a) =>
            a.name.startsWith("on")
          )
        ).length,
        scriptLinks: Array.from(document.querySelectorAll("#log a")).filter((a) =>
          (a.getAttribute("href") ?? "").toLowerCase().includes("javascript")
        ).length,
        bold: document.querySelectorAll("#log .md strong").length,
        text: document.querySelector("#log")!.textContent
      }))
    )
    expect(found).toMatchObject({ pwned: undefined, images: 0, scripts: 0, handlers: 0, scriptLinks: 0, bold: 2 })
    // What was typed shows as text.
    expect(found.text).toContain("<img src=x onerror=")
    expect(found.text).toContain("<script>")
    yield* screenshot(page, "session-markdown")
  }), 60_000)

/**
 * The web page at `/`, in a real Chromium against a real server, as a new
 * user meets it: connect with a dev token, create a thread, ask, watch the
 * run (thinking, the tool call, the answer), cancel a run, keep following
 * new output, and a layout that works at 390 px. Screenshots are saved in
 * test-artifacts/.
 */
import { expect, it } from "@effect/vitest"
import { Effect } from "effect"
import type { Page } from "playwright-core"
import { ask, browser, openPage, screenshot, server, startThread } from "../utils/Browser.ts"
import { Gate, gatedModel } from "../utils/Models.ts"

/** How far the newest item of the log is below the visible part of the log (0 when it is in view). */
const belowView = (page: Page) =>
  Effect.promise(() =>
    page.locator("#log").evaluate((log) => {
      const last = log.lastElementChild
      if (last === null) return 0
      return Math.max(0, last.getBoundingClientRect().bottom - log.getBoundingClientRect().bottom)
    })
  )

it.scopedLive(
  "a question shows the thinking, the tool call with its input and output, and the answer",
  () =>
    Effect.gen(function*() {
      const chat = yield* server()
      const page = yield* openPage(yield* browser, chat.httpUrl)
      yield* startThread(page, "alice")
      yield* ask(page, "what is 12 * (3 + 4)?")
      yield* Effect.promise(() => page.getByText(/assistant · .* ms/).waitFor())
      const log = yield* Effect.promise(() => page.locator("#log").innerText())
      expect(log).toContain("84")
      expect(log).toContain("calculator")
      expect(log).toContain("12 * (3 + 4)")
      expect(log).toMatch(/assistant · .* ms/)
      yield* screenshot(page, "page-run")
    }),
  60_000
)

it.scopedLive.each([
  { how: "its Cancel button", cancel: (page: Page) => page.getByRole("button", { name: "Cancel run" }).click() },
  { how: "Escape", cancel: (page: Page) => page.keyboard.press("Escape") }
])("a run in progress can be cancelled with $how", ({ cancel: press, how }) =>
  Effect.gen(function*() {
    const gate = new Gate()
    const chat = yield* server({ model: gatedModel(gate, 3) })
    const page = yield* openPage(yield* browser, chat.httpUrl)
    yield* startThread(page, "alice")
    yield* ask(page, "take your time")
    const cancel = page.getByRole("button", { name: "Cancel run" })
    yield* Effect.promise(() => cancel.waitFor({ state: "visible" }))
    yield* Effect.promise(() => press(page))
    yield* Effect.promise(() => page.getByText("agent error · cancelled").waitFor())
    yield* Effect.promise(() => cancel.waitFor({ state: "hidden" }))
    yield* screenshot(page, how === "Escape" ? "page-cancelled-escape" : "page-cancelled")
  }), 60_000)

it.scopedLive(
  "the view follows new output, tool calls included, while the reader is at the bottom",
  () =>
    Effect.gen(function*() {
      const chat = yield* server()
      const page = yield* openPage(yield* browser, chat.httpUrl, { width: 1280, height: 500 })
      yield* startThread(page, "alice")
      for (let i = 1; i <= 4; i++) {
        yield* ask(page, `what is ${i} * (3 + 4)?`)
        yield* Effect.promise(() => page.getByText(new RegExp(`\\b${i * 7}\\b`)).last().waitFor())
        yield* Effect.promise(() => page.waitForTimeout(100))
        expect(yield* belowView(page)).toBeLessThanOrEqual(1)
      }
      // Scrolled up, the reader stays where he is and is told there is more below.
      yield* Effect.promise(() => page.locator("#log").evaluate((log) => log.scrollTop = 0))
      yield* ask(page, "what is 5 * (3 + 4)?")
      const newer = page.getByRole("button", { name: "New messages ↓" })
      yield* Effect.promise(() => newer.waitFor({ state: "visible" }))
      expect(yield* Effect.promise(() => page.locator("#log").evaluate((log) => log.scrollTop))).toBe(0)
      yield* screenshot(page, "page-newer-marker")
      yield* Effect.promise(() => newer.click())
      yield* Effect.promise(() => newer.waitFor({ state: "hidden" }))
      expect(yield* belowView(page)).toBeLessThanOrEqual(1)
      yield* screenshot(page, "page-follows")
    }),
  60_000
)

it.scopedLive(
  "at 390 px wide the chat column takes the width, the thread list above it behind a Threads toggle",
  () =>
    Effect.gen(function*() {
      const chat = yield* server()
      const page = yield* openPage(yield* browser, chat.httpUrl, { width: 390, height: 844 })
      yield* startThread(page, "alice")
      const width = yield* Effect.promise(() =>
        page.locator("#log").evaluate((log) => log.getBoundingClientRect().width)
      )
      expect(width).toBeGreaterThanOrEqual(360)
      const scrolls = yield* Effect.promise(() =>
        page.evaluate(() => document.documentElement.scrollWidth > document.documentElement.clientWidth)
      )
      expect(scrolls).toBe(false)
      yield* ask(page, "what is 12 * (3 + 4)?")
      yield* Effect.promise(() => page.getByText(/84/).last().waitFor())
      yield* screenshot(page, "page-390")
      // The thread list, collapsed once a thread is open, comes back above the chat with the Threads toggle.
      const toggle = page.getByRole("button", { name: "Threads" })
      expect(yield* Effect.promise(() => toggle.getAttribute("aria-expanded"))).toBe("false")
      expect(yield* Effect.promise(() => page.locator("#sidebar").isVisible())).toBe(false)
      yield* Effect.promise(() => toggle.click())
      const [list, log] = yield* Effect.promise(() =>
        Promise.all([page.locator("#sidebar").boundingBox(), page.locator("#log").boundingBox()])
      )
      expect(list!.y + list!.height).toBeLessThanOrEqual(log!.y + 1)
      expect(yield* Effect.promise(() => toggle.getAttribute("aria-expanded"))).toBe("true")
      yield* screenshot(page, "page-390-threads")
    }),
  60_000
)

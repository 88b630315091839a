/**
 * A real Chromium for the page's tests, driven by playwright-core: Debian's
 * `chromium` (`.ci/run` installs it when missing), or CHROMIUM_PATH.
 * Screenshots go to test-artifacts/ (ignored by git).
 */
import { Context, Effect, Layer } from "effect"
import { mkdirSync } from "node:fs"
import { fileURLToPath } from "node:url"
import { type Browser, chromium, type Page } from "playwright-core"
import { TestServer, type TestServerOptions } from "./TestServer.ts"

const artifacts = fileURLToPath(new URL("../../test-artifacts/", import.meta.url))

export const executablePath = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium"

/** A browser for the scope. */
export const browser = Effect.acquireRelease(
  Effect.promise(() => chromium.launch({ executablePath, args: ["--no-sandbox", "--disable-gpu"] })),
  (b) => Effect.promise(() => b.close())
)

/** A fresh page (its own storage) at `url`, `width` × `height` CSS pixels, closed with the scope. */
export const openPage = (b: Browser, url: string, viewport = { width: 1280, height: 800 }) =>
  Effect.acquireRelease(
    Effect.promise(async () => {
      const context = await b.newContext({ viewport })
      const page = await context.newPage()
      await page.goto(url)
      return page
    }),
    (page) => Effect.promise(() => page.context().close())
  )

/** Saves a screenshot of the page as test-artifacts/<name>.png. */
export const screenshot = (page: Page, name: string) =>
  Effect.promise(async () => {
    mkdirSync(artifacts, { recursive: true })
    await page.screenshot({ path: `${artifacts}${name}.png`, fullPage: false })
  })

/** A server of the test's own, for the scope. */
export const server = (options: TestServerOptions = {}) =>
  Effect.map(Layer.build(TestServer.layer(options)), Context.get(TestServer))

/** Connects as `name` with a dev token, as a new user does. */
export const signIn = (page: Page, name: string) =>
  Effect.promise(async () => {
    await page.getByLabel("user name").fill(name)
    await page.getByRole("button", { name: "Connect" }).click()
    await page.getByText(`as ${name}`).waitFor()
  })

/** Connects as `name` and creates a thread, which the page then opens. */
export const startThread = (page: Page, name: string) =>
  Effect.zipRight(
    signIn(page, name),
    Effect.promise(async () => {
      await page.getByRole("button", { name: "New thread" }).click()
      await page.locator("#msg:not([disabled])").waitFor()
    })
  )

/** Types a message and sends it with Enter. */
export const ask = (page: Page, text: string) =>
  Effect.promise(async () => {
    await page.locator("#msg").fill(text)
    await page.keyboard.press("Enter")
  })

/**
 * The page at `/`: src/web/index.html with the browser app (src/web/app, built on the typed SDK of
 * src/client) bundled by esbuild in memory the first time it is asked for, and kept. Nothing is
 * written to disk, so `npm start` on a fresh clone serves it with no build step.
 */
import { build } from "esbuild"
import { readFile } from "node:fs/promises"
import { fileURLToPath } from "node:url"

const here = (path: string) => fileURLToPath(new URL(path, import.meta.url))

/** The app as one ES module, for the browser. */
export const bundleApp = async (): Promise<string> => {
  const result = await build({
    entryPoints: [here("./app/main.ts")],
    bundle: true,
    write: false,
    format: "esm",
    platform: "browser",
    target: "es2022",
    minify: true,
    legalComments: "none",
    logLevel: "silent"
  })
  return result.outputFiles[0]!.text
}

/** The page: the HTML with the app inlined as a module script (`</script` cannot occur in it). */
export const renderPage = async (): Promise<string> => {
  const [html, app] = await Promise.all([readFile(here("./index.html"), "utf8"), bundleApp()])
  const script = app.replace(/<\/(script)/gi, "<\\/$1")
  return html.replace("<!-- app -->", () => `<script type="module">${script}</script>`)
}

let cached: Promise<string> | undefined

/** The page, built once per process; a failed build is tried again on the next request. */
export const page = (): Promise<string> => {
  if (cached === undefined) {
    cached = renderPage()
    cached.catch(() => cached = undefined)
  }
  return cached
}

/**
 * Markdown to safe HTML: marked for the syntax, raw HTML in the text shown as text (escaped, not
 * interpreted), and DOMPurify over the result as a second line: no script, handler or style survives.
 */
import DOMPurify from "dompurify"
import { Marked } from "marked"

const escapeHtml = (text: string) =>
  text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;")

const marked = new Marked({
  gfm: true,
  breaks: true,
  renderer: {
    html: ({ text }) => escapeHtml(text)
  }
})

const purify = DOMPurify(window)
purify.addHook("afterSanitizeAttributes", (node) => {
  if (node.tagName === "A") {
    node.setAttribute("target", "_blank")
    node.setAttribute("rel", "noopener noreferrer nofollow")
  }
})

/** The text as sanitised HTML. */
export const renderMarkdown = (text: string): string =>
  purify.sanitize(marked.parse(text, { async: false }), {
    FORBID_TAGS: ["img", "style", "form", "input", "button", "iframe", "svg", "math"],
    FORBID_ATTR: ["style"]
  })

/** Sets an element's content to the markdown of `text`. */
export const setMarkdown = (element: HTMLElement, text: string): void => {
  element.innerHTML = renderMarkdown(text)
}

/**
 * Why a WebSocket does not open, asked over HTTP, since a browser sees only "closed 1006" for a
 * refused upgrade: the server's readiness (`/health/ready`: starting, draining), then the token
 * (`GET /api/threads`: 401 means refused). A server that is ready and takes the token over HTTP
 * but not the socket refused the page's origin (or something between blocks WebSockets).
 */
export type Diagnosis =
  | { readonly kind: "unreachable"; readonly text: string }
  | { readonly kind: "not_ready"; readonly text: string }
  | { readonly kind: "token_refused"; readonly text: string }
  | { readonly kind: "socket_refused"; readonly text: string }

export const diagnose = async (token: string | undefined): Promise<Diagnosis> => {
  let health: Response
  try {
    health = await fetch("/health/ready", { cache: "no-store" })
  } catch {
    return { kind: "unreachable", text: "The server does not answer (is it running?); retrying." }
  }
  if (!health.ok) {
    const body = await health.json().catch(() => ({})) as { readonly status?: string }
    const status = body.status ?? `HTTP ${health.status}`
    const why = status === "starting"
      ? "the server is starting"
      : status === "draining"
      ? "the server is draining (shutting down)"
      : `the server is not ready (${status})`
    return { kind: "not_ready", text: `Cannot connect: ${why}; retrying.` }
  }
  if (token !== undefined) {
    const threads = await fetch("/api/threads", { headers: { authorization: `Bearer ${token}` } }).catch(() => null)
    if (threads !== null && threads.status === 401) {
      const body = await threads.json().catch(() => ({})) as { readonly reason?: string }
      return { kind: "token_refused", text: `Cannot connect: token refused${body.reason ? ` (${body.reason})` : ""}.` }
    }
  }
  return {
    kind: "socket_refused",
    text: "Cannot connect: the server refused the WebSocket (this page's origin is not allowed, or a proxy blocks it)."
  }
}

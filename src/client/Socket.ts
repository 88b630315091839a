/**
 * The WebSocket the SDK runs on: the caller's constructor, else the global
 * `WebSocket` (browsers, Node 22+), else the `ws` package, imported lazily
 * so a browser bundle never contains it. Only `ws` can send headers, so
 * only with it does the token go in `Authorization`; otherwise it goes in
 * the `token` query parameter (PROTOCOL.md section 1).
 */

/** The part of the WHATWG WebSocket the SDK uses; the browser's, undici's and `ws`'s all have it. */
export interface WebSocketLike {
  readonly readyState: number
  send(data: string): void
  close(code?: number, reason?: string): void
  onopen: ((event: any) => void) | null
  onmessage: ((event: { readonly data: unknown }) => void) | null
  onclose: ((event: { readonly code: number; readonly reason: string }) => void) | null
  onerror: ((event: any) => void) | null
}

export type WebSocketConstructor = new(url: string, protocols?: string | Array<string>) => WebSocketLike

export type SocketFactory = (url: string, token: string) => WebSocketLike

const withQueryToken = (url: string, token: string) => {
  const target = new URL(url)
  target.searchParams.set("token", token)
  return target.toString()
}

/** Where the socket comes from, and how the token travels (`header` only with `ws`). */
export const socketFactory = async (
  given: WebSocketConstructor | undefined,
  tokenIn: "header" | "query" | undefined
): Promise<SocketFactory> => {
  const ctor = given ?? (globalThis as { readonly WebSocket?: WebSocketConstructor }).WebSocket
  if (ctor !== undefined) return (url, token) => new ctor(withQueryToken(url, token))
  // A specifier bundlers do not follow: the browser path never reaches this line.
  const specifier = "ws"
  const ws: any = await import(/* @vite-ignore */ /* webpackIgnore: true */ specifier)
  const Ws = ws.default ?? ws.WebSocket
  return tokenIn === "query"
    ? (url, token) => new Ws(withQueryToken(url, token))
    : (url, token) => new Ws(url, { headers: { authorization: `Bearer ${token}` } })
}

/** A received message as text (`ws` gives text frames as strings to `onmessage`, but be lenient). */
export const messageText = (data: unknown): string | undefined => {
  if (typeof data === "string") return data
  if (data instanceof ArrayBuffer) return new TextDecoder().decode(data)
  if (ArrayBuffer.isView(data)) return new TextDecoder().decode(data)
  return undefined
}

import { describe, expect, it } from "@effect/vitest"
import { isOwnOrigin, originAllowed } from "../../src/gateway/Upgrade.ts"

describe("the origin rule of /ws", () => {
  const listed = new Set(["https://chat.example"])

  it("checks the list only when an Origin is sent, and always admits the server's own", () => {
    expect(originAllowed(listed, undefined, "api.example")).toBe(true)
    expect(originAllowed(listed, "https://chat.example", "api.example")).toBe(true)
    expect(originAllowed(listed, "http://api.example", "api.example")).toBe(true)
    expect(originAllowed(listed, "https://evil.example", "api.example")).toBe(false)
    expect(originAllowed(new Set(), "https://evil.example", "api.example")).toBe(true)
  })

  it("compares host and port, whatever the scheme, with default ports written or not", () => {
    expect(isOwnOrigin("http://127.0.0.1:8080", "127.0.0.1:8080")).toBe(true)
    // TLS ended at a proxy: the page is https, the request reaching the server is not.
    expect(isOwnOrigin("https://chat.example", "chat.example")).toBe(true)
    expect(isOwnOrigin("https://chat.example", "chat.example:443")).toBe(true)
    expect(isOwnOrigin("http://chat.example:80", "chat.example")).toBe(true)
    expect(isOwnOrigin("http://Chat.Example", "chat.example")).toBe(true)
    expect(isOwnOrigin("http://127.0.0.1:8080", "127.0.0.1:8081")).toBe(false)
    expect(isOwnOrigin("http://chat.example.evil", "chat.example")).toBe(false)
    expect(isOwnOrigin("http://127.0.0.1:8080", undefined)).toBe(false)
  })

  it("never takes an opaque or malformed origin for the server's own", () => {
    expect(isOwnOrigin("null", "null")).toBe(false)
    expect(isOwnOrigin("file://", "")).toBe(false)
    expect(isOwnOrigin("ws://chat.example", "chat.example")).toBe(false)
    expect(isOwnOrigin("http://chat.example", "chat.example/path")).toBe(false)
    expect(isOwnOrigin("http://chat.example", "evil@chat.example")).toBe(false)
  })
})

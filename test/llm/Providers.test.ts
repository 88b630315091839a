/**
 * Both @effect/ai providers, wired from the provider settings, against the
 * fake server speaking their APIs: text, a tool call, reasoning, usage, an
 * error status, and an interrupted stream, with the SSE cut at odd bytes.
 */
import { AiError, LanguageModel } from "@effect/ai"
import { FetchHttpClient } from "@effect/platform"
import { NodeHttpClient } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { Cause, Chunk, Effect, Stream } from "effect"
import * as Fake from "../utils/FakeProviders.ts"
import { cases, fakeServer, firstDelta, handlers, KEY, streamParts, toolkit } from "../utils/ProviderCases.ts"
import { until } from "../utils/until.ts"

describe.each(cases)("$name", (c) => {
  it.scopedLive("streams text deltas that concatenate to the answer, the SSE cut at odd bytes", () =>
    Effect.gen(function*() {
      const server = yield* fakeServer
      server.script(c.path, { ...c.text(["Hel", "lo, ", "wor", "ld!"]), split: [7, 3, 11] })
      const parts = yield* streamParts(c, c.settings(server.url))
      const deltas = parts.flatMap((p) => p.type === "text-delta" ? [p.delta] : [])
      expect(deltas).toEqual(["Hel", "lo, ", "wor", "ld!"])
      expect(parts.filter((p) => p.type === "response-metadata")).toHaveLength(1)
      expect(parts.map((p) => p.type).filter((t) => t.startsWith("text-"))).toEqual([
        "text-start",
        ...deltas.map(() => "text-delta"),
        "text-end"
      ])
      expect(parts.at(-1)).toMatchObject({ type: "finish", reason: "stop" })
    }))

  it.scopedLive("delivers a tool call whose arguments came in pieces as one tool-call part with decoded params", () =>
    Effect.gen(function*() {
      const server = yield* fakeServer
      server.script(c.path, { ...c.toolCall("call_42", ["{\"expre", "ssion\":\"2", " + 3\"}"]), split: 5 })
      const parts = yield* streamParts(c, c.settings(server.url))
      const calls = parts.filter((p) => p.type === "tool-call")
      expect(calls).toHaveLength(1)
      expect(calls[0]).toMatchObject({ id: "call_42", name: "calculator", params: { expression: "2 + 3" } })
      expect(calls[0]!.providerExecuted).toBe(false)
      const pieces = parts.flatMap((p) => p.type === "tool-params-delta" ? [p.delta] : [])
      expect(pieces.join("")).toBe("{\"expression\":\"2 + 3\"}")
      expect(parts.at(-1)).toMatchObject({ type: "finish", reason: "tool-calls" })
    }))

  it.scopedLive("delivers reasoning as reasoning-delta parts before the text", () =>
    Effect.gen(function*() {
      const server = yield* fakeServer
      server.script(c.path, { ...c.reasoning(["The user wants", " a sum."], ["5"]), split: 9 })
      const parts = yield* streamParts(c, c.settings(server.url))
      const thoughts = parts.flatMap((p) => p.type === "reasoning-delta" && p.delta !== "" ? [p.delta] : [])
      expect(thoughts).toEqual(["The user wants", " a sum."])
      const types = parts.map((p) => p.type)
      expect(types.indexOf("reasoning-start")).toBeLessThan(types.indexOf("reasoning-delta"))
      expect(types.lastIndexOf("reasoning-end")).toBeLessThan(types.indexOf("text-delta"))
      expect(parts.flatMap((p) => p.type === "text-delta" ? [p.delta] : [])).toEqual(["5"])
      if (c.name === "anthropic") {
        // The signature comes as an empty delta carrying it, to send the thinking block back.
        const signed = parts.filter((p) => p.type === "reasoning-delta" && p.delta === "")
        expect(signed.map((p) => p.metadata)).toEqual([{ anthropic: { type: "thinking", signature: "sig-abc" } }])
      }
    }))

  it.scopedLive("reports the usage on the finish part", () =>
    Effect.gen(function*() {
      const server = yield* fakeServer
      server.script(c.path, c.usage)
      const parts = yield* streamParts(c, c.settings(server.url))
      const finish = parts.filter((p) => p.type === "finish")
      expect(finish).toHaveLength(1)
      expect(finish[0]!.usage).toMatchObject(c.expectedUsage)
    }))

  for (const status of [401, 500]) {
    it.scopedLive(`fails on a ${status} with an AiError naming the status and not the key, without retrying`, () =>
      Effect.gen(function*() {
        const server = yield* fakeServer
        const [answer, said] = c.failure(status)
        server.script(c.path, answer)
        const error = yield* Effect.flip(streamParts(c, c.settings(server.url)))
        expect(AiError.isAiError(error)).toBe(true)
        expect(error).toMatchObject({ _tag: "HttpResponseError", reason: "StatusCode", response: { status } })
        expect(error.message).toContain(`${status} POST ${server.url}${c.path}`)
        expect(error.message).toContain(said)
        expect(error.message).not.toContain(KEY)
        expect(JSON.stringify(error)).not.toContain(KEY)
        expect(Cause.pretty(Cause.fail(error))).not.toContain(KEY)
        // The key did go out, so its absence above means something; and one request only: no retry.
        expect(String(c.keyHeader(server.requests[0]!.headers))).toContain(KEY)
        expect(server.requestsTo(c.path)).toHaveLength(1)
      }))
  }

  for (const [client, http] of [["fetch", FetchHttpClient.layer], ["undici", NodeHttpClient.layerUndici]] as const) {
    it.scopedLive(`closes the request when the stream is interrupted mid-way (${client} client)`, () =>
      Effect.gen(function*() {
        const server = yield* fakeServer
        const answer = c.text(["Hel", "lo"])
        server.script(c.path, Fake.stalledAfter(answer, firstDelta(answer)))
        const parts = yield* LanguageModel.streamText({ prompt: "hi", toolkit, disableToolCallResolution: true }).pipe(
          Stream.takeUntil((p) => p.type === "text-delta"),
          Stream.runCollect,
          Effect.map(Chunk.toArray),
          Effect.provide(c.layer(c.settings(server.url))),
          Effect.provide(handlers),
          Effect.provide(http)
        )
        expect(parts.at(-1)).toMatchObject({ type: "text-delta", delta: "Hel" })
        yield* Effect.promise(() => until(async () => server.requests[0]?.aborted, "the request to be aborted", 3_000))
        expect(server.requests[0]!.finished).toBe(false)
      }))
  }
})

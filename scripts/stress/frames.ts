/**
 * Malformed and random frames. Several connections each send a stream of
 * seeded bad frames (not JSON, truncated JSON, JSON that is not an object,
 * unknown types, missing fields, wrong types, huge numbers, deep nesting,
 * random binary, odd Unicode, prototype keys) mixed with harmless valid
 * ones, one at a time, and wait for the answer: exactly one reply frame,
 * or the close the protocol defines (1009 for a frame over the limit,
 * 1007 for a text frame that is not UTF-8). No `internal` error, nothing
 * logged as an error, and the server still serves afterwards.
 */
import { type StressClient } from "./client.ts"
import { type Budget, errorMessage, type Invariant, invariant } from "./common.ts"
import { Random } from "./random.ts"
import { startServer } from "./server.ts"

export interface FramesConfig {
  readonly seed: number
  readonly frames: number
  readonly connections: number
}

const MAX_FRAME = 16 * 1024
const TYPES = ["ping", "create_thread", "join_thread", "leave_thread", "send_message", "cancel_run", "refresh_token"]
const PRINTABLE = " !\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefghijklmnopqrstuvwxyz{|}~"

/** What a frame must get back. */
type Expect = "reply" | 1009 | 1007

interface Frame {
  readonly kind: string
  readonly data: string | Buffer
  readonly binary?: boolean
  readonly expect: Expect
}

const oddValue = (rng: Random): unknown =>
  rng.pick<() => unknown>([
    () => rng.int(-1e6, 1e6),
    () => rng.pick([1e308, -1e308, 2 ** 53 + 1, -0, 0.5, -1, Number.MAX_SAFE_INTEGER * 1000]),
    () => rng.string(rng.int(0, 80), PRINTABLE),
    () => "x".repeat(rng.int(60, 1000)),
    () => null,
    () => rng.chance(0.5),
    () => [1, "a", null],
    () => ({ nested: { deeper: [rng.int(0, 9)] } })
  ])()

/** A plausible request of `type`, with the fields it needs (the thread and run do not exist). */
const plausible = (rng: Random, type: string): Record<string, unknown> => {
  const id = `f${rng.uint32()}`
  switch (type) {
    case "create_thread":
      return { type, id, title: rng.string(rng.int(0, 40), PRINTABLE), members: ["somebody"] }
    case "join_thread":
      return { type, id, thread_id: `t${rng.uint32()}`, after_seq: rng.int(0, 100) }
    case "leave_thread":
      return { type, id, thread_id: `t${rng.uint32()}` }
    case "send_message":
      return { type, id, thread_id: `t${rng.uint32()}`, content: "hello" }
    case "cancel_run":
      return { type, id, run_id: `r${rng.uint32()}` }
    case "refresh_token":
      return { type, id, token: rng.string(rng.int(0, 100), PRINTABLE) }
    default:
      return { type, id }
  }
}

const nest = (depth: number, open: string, close: string, inner = "1") =>
  open.repeat(depth) + inner + close.repeat(depth)

/** Draws one frame; valid harmless requests (answered `not_found`, `forbidden`, `pong`) are part of the mix. */
const draw = (rng: Random): Frame => {
  const reply = (kind: string, data: string): Frame => ({ kind, data, expect: "reply" })
  const roll = rng.int(0, 999)
  if (roll < 4) {
    return { kind: "oversize", data: JSON.stringify({ type: "ping", pad: "x".repeat(MAX_FRAME) }), expect: 1009 }
  }
  if (roll < 6) return { kind: "invalid_utf8", data: Buffer.from([0x7b, 0xff, 0xfe, 0x7d]), expect: 1007 }
  const kind = rng.pick([
    "garbage",
    "truncated",
    "not_object",
    "unknown_type",
    "missing_field",
    "wrong_type",
    "huge_number",
    "deep_nesting",
    "binary",
    "unicode",
    "prototype",
    "valid"
  ])
  const base = plausible(rng, rng.pick(TYPES))
  switch (kind) {
    case "garbage":
      return reply(kind, rng.string(rng.int(0, 200), PRINTABLE))
    case "truncated": {
      const text = JSON.stringify(base)
      return reply(kind, text.slice(0, rng.int(0, text.length - 1)))
    }
    case "not_object":
      return reply(
        kind,
        rng.pick(["42", "[1,2]", "null", "true", "\"ping\"", "1e999", "123456789012345678901234567890"])
      )
    case "unknown_type":
      return reply(kind, JSON.stringify({ ...base, type: rng.string(rng.int(0, 20), PRINTABLE) }))
    case "missing_field": {
      const keys = Object.keys(base)
      const { [rng.pick(keys)]: _dropped, ...rest } = base
      return reply(kind, JSON.stringify(rest))
    }
    case "wrong_type":
      return reply(kind, JSON.stringify({ ...base, [rng.pick(Object.keys(base))]: oddValue(rng) }))
    case "huge_number": {
      const number = rng.pick(["1e999", "-1e999", "9007199254740993", "1".repeat(400), "-0", "1.0000000000000002"])
      const field = rng.pick(["after_seq", "id", "thread_id", "type"])
      return reply(kind, JSON.stringify({ ...base, [field]: 0 }).replace(`"${field}":0`, `"${field}":${number}`))
    }
    case "deep_nesting": {
      const depth = rng.int(100, MAX_FRAME / 2 - 100)
      return reply(
        kind,
        rng.chance(0.5) ? nest(depth, "[", "]") : `{"type":"ping","id":"deep","x":${nest(depth / 6, "{\"a\":", "}")}}`
      )
    }
    case "binary":
      return { kind, data: rng.bytes(rng.int(0, 2000)), binary: true, expect: "reply" }
    case "unicode":
      return reply(
        kind,
        JSON.stringify({
          ...base,
          id: String.fromCodePoint(...Array.from({ length: 8 }, () => rng.int(0x80, 0x10ffff)))
        })
          .replace("}", ",\"lone\":\"\\ud800\"}")
      )
    case "prototype":
      return reply(
        kind,
        rng.chance(0.5)
          ? `{"__proto__":{"type":"ping"},"id":"p${rng.uint32()}"}`
          : JSON.stringify(base).replace("{", "{\"__proto__\":{\"polluted\":true},\"constructor\":{\"prototype\":{}},")
      )
    default:
      return reply(kind, JSON.stringify(base))
  }
}

export const framesScenario = async (config: FramesConfig, budget: Budget): Promise<Array<Invariant>> => {
  const random = new Random(config.seed, "frames")
  const server = await startServer({ config: { maxFrameBytes: MAX_FRAME } })
  const counts = {
    frames: 0,
    answered: 0,
    errors_answered: 0,
    pongs: 0,
    acks: 0,
    closed_1009: 0,
    closed_1007: 0,
    unanswered: 0,
    wrong_answers: 0,
    internal_errors: 0,
    server_errors_logged: 0,
    health_after: 0
  }
  const byKind: Record<string, number> = {}
  const problems: Array<string> = []
  const note = (problem: string) => {
    if (problems.length < 5) problems.push(problem)
  }

  /** Sends one frame and waits for its answer: the next reply frame, or the close. */
  const exchange = (client: StressClient, frame: Frame) =>
    new Promise<{ reply?: Record<string, any>; close?: number }>((resolve) => {
      const timer = setTimeout(() => resolve({}), budget.timeout(10_000))
      const done = (answer: { reply?: Record<string, any>; close?: number }) => {
        clearTimeout(timer)
        client.onFrame = () => {}
        client.ws.off("close", onClose)
        resolve(answer)
      }
      const onClose = (code: number) => done({ close: code })
      client.onFrame = (reply) => reply.type === "welcome" || done({ reply })
      client.ws.once("close", onClose)
      client.ws.send(frame.data, { binary: frame.binary === true })
    })

  const worker = async (index: number, quota: number) => {
    const rng = random.fork(`connection-${index}`)
    const user = `fuzzer-${index}`
    let client = await server.connect(user)
    for (let i = 0; i < quota; i++) {
      budget.check("sending frames")
      const frame = draw(rng)
      counts.frames++
      byKind[frame.kind] = (byKind[frame.kind] ?? 0) + 1
      const answer = await exchange(client, frame)
      if (answer.reply !== undefined) {
        counts.answered++
        const reply = answer.reply
        if (reply.type === "error") counts.errors_answered++
        else if (reply.type === "pong") counts.pongs++
        else if (reply.type === "ack") counts.acks++
        if (reply.code === "internal") {
          counts.internal_errors++
          note(`internal error for ${frame.kind}: ${String(frame.data).slice(0, 120)}`)
        }
        if (frame.expect !== "reply" || !["error", "pong", "ack"].includes(reply.type)) {
          counts.wrong_answers++
          note(`${frame.kind} answered ${JSON.stringify(reply).slice(0, 160)}`)
        }
        continue
      }
      if (answer.close === 1009) counts.closed_1009++
      else if (answer.close === 1007) counts.closed_1007++
      if (answer.close === undefined) {
        counts.unanswered++
        note(`no answer to ${frame.kind}: ${String(frame.data).slice(0, 120)}`)
      } else if (answer.close !== frame.expect) {
        counts.wrong_answers++
        note(`${frame.kind} closed the connection with ${answer.close}`)
      }
      client.terminate()
      client = await server.connect(user)
    }
    client.close()
  }

  try {
    const quota = Math.ceil(config.frames / config.connections)
    await Promise.all(Array.from({ length: config.connections }, (_, i) => worker(i, quota)))
    // Still serving: health checks, and a new connection's requests.
    try {
      const live = await fetch(`${server.httpUrl}/health/live`)
      const ready = await fetch(`${server.httpUrl}/health/ready`)
      const client = await server.connect("after-fuzz")
      await client.request({ type: "ping" })
      const { thread_id } = await client.request({ type: "create_thread" })
      await client.request({ type: "join_thread", thread_id })
      client.close()
      if (live.status === 200 && ready.status === 200) counts.health_after = 1
      else note(`health after: live ${live.status}, ready ${ready.status}`)
    } catch (error) {
      note(`server not serving after the frames: ${errorMessage(error)}`)
    }
  } finally {
    await server.closeReporting(counts, problems)
  }
  return [
    invariant(
      "malformed/random frames: each answered (reply or defined close), 0 crashes, server still serving",
      counts.frames >= config.frames && counts.answered + counts.closed_1009 + counts.closed_1007 === counts.frames &&
        counts.unanswered + counts.wrong_answers + counts.internal_errors + counts.server_errors_logged === 0 &&
        counts.health_after === 1,
      { ...counts, ...Object.fromEntries(Object.entries(byKind).sort().map(([k, v]) => [`kind_${k}`, v])) },
      problems.join("; ")
    )
  ]
}

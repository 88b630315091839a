import { describe, expect, it } from "@effect/vitest"
import { ConfigProvider, Duration, Effect, Either, Layer, Option, Redacted } from "effect"
import { AppConfig, defaults, makeTestConfig, validate } from "../../src/config/AppConfig.ts"
import { AppConfigLive } from "../../src/config/Environment.ts"

const production = (jwtSecret: string) =>
  makeTestConfig({
    env: "production",
    databaseUrl: Option.some(Redacted.make("postgres://db/agent_chat")),
    jwtSecret: Option.some(Redacted.make(jwtSecret)),
    llm: { ...defaults.llm, provider: Option.some("builtin") }
  })

const refusal = (config: ReturnType<typeof makeTestConfig>) =>
  Either.match(validate(config), { onLeft: (error) => error.message, onRight: () => "accepted" })

describe("the HS256 secret", () => {
  it("is refused outside development below 32 bytes, naming JWT_SECRET and its length", () => {
    expect(refusal(production("x".repeat(31)))).toBe(
      "Config failed to start: JWT_SECRET must be at least 32 bytes (RFC 7518 section 3.2); it has 31"
    )
    expect(refusal({ ...production("x".repeat(31)), env: "staging" })).toMatch(/JWT_SECRET must be at least 32 bytes/)
    expect(refusal(production("x".repeat(32)))).toBe("accepted")
  })

  it("is counted in UTF-8 bytes, the key HMAC is given", () => {
    // 16 characters, 32 bytes: long enough. 11 characters, 33 bytes: long enough, though short to the eye.
    expect(refusal(production("é".repeat(16)))).toBe("accepted")
    expect(refusal(production("€".repeat(11)))).toBe("accepted")
    // 31 bytes in 16 characters: one ASCII and fifteen two-byte characters.
    expect(refusal(production("a" + "é".repeat(15)))).toMatch(/it has 31$/)
  })

  it("is reported together with whatever else is missing", () => {
    const config = { ...production("abc"), databaseUrl: Option.none() }
    expect(refusal(config)).toBe(
      "Config failed to start: APP_ENV=production requires DATABASE_URL to be set; " +
        "JWT_SECRET must be at least 32 bytes (RFC 7518 section 3.2); it has 3"
    )
  })

  it("may be anything in development", () => {
    expect(refusal(makeTestConfig({ env: "development", jwtSecret: Option.some(Redacted.make("abc")) }))).toBe(
      "accepted"
    )
  })

  // The outcome as a string: a failing assertion must not have to print a whole configuration.
  const fromEnv = (env: Record<string, string>) =>
    AppConfig.pipe(
      Effect.provide(AppConfigLive.pipe(
        Layer.provide(Layer.setConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(env)))))
      )),
      Effect.match({ onFailure: (error) => `${error._tag}: ${error.message}`, onSuccess: () => "accepted" })
    )

  it.effect("stops the configuration layer read from the environment", () =>
    Effect.gen(function*() {
      const db = { DATABASE_URL: "postgres://db/x", LLM_PROVIDER: "builtin" }
      expect(yield* fromEnv({ APP_ENV: "production", ...db, JWT_SECRET: "abc" })).toBe(
        "StartupError: Config failed to start: JWT_SECRET must be at least 32 bytes (RFC 7518 section 3.2); it has 3"
      )
      expect(yield* fromEnv({ APP_ENV: "production", ...db, JWT_SECRET: "s".repeat(32) }))
        .toBe("accepted")
      expect(yield* fromEnv({ JWT_SECRET: "abc" })).toBe("accepted")
    }))
})

describe("the defaults", () => {
  const read = (env: Record<string, string>) =>
    AppConfig.pipe(
      Effect.provide(AppConfigLive.pipe(
        Layer.provide(Layer.setConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(env)))))
      ))
    )

  it.effect("are the one `defaults` constant, whatever the environment leaves unset", () =>
    Effect.gen(function*() {
      expect(yield* read({})).toEqual(defaults)
      // The test configuration starts from the same constant.
      expect(makeTestConfig().catchUpBuffer).toBe(defaults.catchUpBuffer)
      expect(makeTestConfig().runLease).toEqual(defaults.runLease)
    }))

  it.effect("give each setting one meaning: the outbox and the catch-up buffer are set apart", () =>
    Effect.gen(function*() {
      const config = yield* read({ WS_OUTBOX_CAPACITY: "16", WS_CATCHUP_BUFFER: "64", RUN_LEASE_MS: "3000" })
      expect([config.outboxCapacity, config.catchUpBuffer]).toEqual([16, 64])
      expect(config.runLease).toEqual(Duration.millis(3000))
    }))
})

describe("the model settings", () => {
  const read = (env: Record<string, string>) =>
    AppConfig.pipe(
      Effect.provide(AppConfigLive.pipe(
        Layer.provide(Layer.setConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(env)))))
      )),
      Effect.match({ onFailure: (error) => `${error._tag}: ${error.message}`, onSuccess: (config) => config })
    )
  const production = { APP_ENV: "production", DATABASE_URL: "postgres://db/x", JWT_SECRET: "s".repeat(32) }

  it.effect("production and staging require LLM_PROVIDER: no silent fallback to the built-in agent", () =>
    Effect.gen(function*() {
      expect(yield* read(production)).toMatch(/^StartupError: .*APP_ENV=production requires LLM_PROVIDER/)
      expect(yield* read({ ...production, APP_ENV: "staging" })).toMatch(/APP_ENV=staging requires LLM_PROVIDER/)
      const builtin = yield* read({ ...production, LLM_PROVIDER: "builtin" })
      expect(typeof builtin === "string" ? builtin : Option.getOrNull(builtin.llm.provider)).toBe("builtin")
      // Development falls back to the built-in agent when nothing is set.
      const development = yield* read({})
      expect(typeof development === "string" ? development : Option.isNone(development.llm.provider)).toBe(true)
    }))

  it.effect("a real provider requires LLM_MODEL, and a key for its public endpoint", () =>
    Effect.gen(function*() {
      expect(yield* read({ LLM_PROVIDER: "openai-chat", LLM_BASE_URL: "http://127.0.0.1:11434/v1" })).toMatch(
        /LLM_PROVIDER=openai-chat requires LLM_MODEL to be set/
      )
      expect(yield* read({ LLM_PROVIDER: "anthropic", LLM_MODEL: "claude-sonnet-4-5" })).toMatch(
        /LLM_PROVIDER=anthropic at https:\/\/api\.anthropic\.com requires LLM_API_KEY/
      )
      expect(yield* read({ LLM_PROVIDER: "gemini" })).toMatch(/LLM_PROVIDER/)
      expect(yield* read({ LLM_PROVIDER: "openai-chat", LLM_MODEL: "m", LLM_TEMPERATURE: "7" })).toMatch(
        /LLM_TEMPERATURE must be from 0 to 2/
      )
    }))

  it.effect("reads every LLM_ setting, the key as a Redacted that never prints", () =>
    Effect.gen(function*() {
      const config = yield* read({
        LLM_PROVIDER: "openai-chat",
        LLM_BASE_URL: "http://127.0.0.1:8000/v1/",
        LLM_API_KEY: "sk-never-printed",
        LLM_MODEL: "qwen2.5",
        LLM_MAX_OUTPUT_TOKENS: "512",
        LLM_TEMPERATURE: "0.2",
        LLM_HISTORY_CHARS: "9000",
        LLM_REQUEST_TIMEOUT_MS: "4000",
        LLM_STARTUP_CHECK: "false",
        BUILTIN_AGENT_PACE_MS: "0"
      })
      if (typeof config === "string") throw new Error(config)
      expect(Option.getOrNull(config.llm.baseUrl)).toBe("http://127.0.0.1:8000/v1")
      expect(Option.getOrNull(config.llm.model)).toBe("qwen2.5")
      expect(Option.getOrNull(config.llm.maxOutputTokens)).toBe(512)
      expect(Option.getOrNull(config.llm.temperature)).toBe(0.2)
      expect(config.llm.historyChars).toBe(9000)
      expect(Duration.toMillis(config.llm.requestTimeout)).toBe(4000)
      expect(config.llm.startupCheck).toBe(false)
      expect(Duration.toMillis(config.llm.builtinPace)).toBe(0)
      expect(String(config.llm.apiKey)).not.toContain("sk-never-printed")
      expect(JSON.stringify(config)).not.toContain("sk-never-printed")
    }))
})

describe("the broker settings", () => {
  const read = (env: Record<string, string>) =>
    AppConfig.pipe(
      Effect.provide(AppConfigLive.pipe(
        Layer.provide(Layer.setConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(env)))))
      )),
      Effect.match({ onFailure: (error) => error.message, onSuccess: (config) => config })
    )

  it.effect("BROKER is memory by default; redis requires REDIS_URL, kept Redacted", () =>
    Effect.gen(function*() {
      const memory = yield* read({})
      expect(typeof memory === "string" ? memory : memory.broker).toBe("memory")
      expect(yield* read({ BROKER: "redis" })).toMatch(/BROKER=redis requires REDIS_URL to be set/)
      expect(yield* read({ BROKER: "kafka" })).toMatch(/BROKER/)
      const redis = yield* read({ BROKER: "redis", REDIS_URL: "redis://:secret-pass@10.0.0.5:6379" })
      if (typeof redis === "string") throw new Error(redis)
      expect(redis.broker).toBe("redis")
      expect(JSON.stringify(redis)).not.toContain("secret-pass")
    }))

  it.effect("PRESENCE_TTL_MS and BROKER_POLL_MS: 10 s and 1 s by default, positive integers", () =>
    Effect.gen(function*() {
      const defaults = yield* read({})
      if (typeof defaults === "string") throw new Error(defaults)
      expect(Duration.toMillis(defaults.presenceTtl)).toBe(10_000)
      expect(Duration.toMillis(defaults.brokerPoll)).toBe(1_000)
      const set = yield* read({ PRESENCE_TTL_MS: "4000", BROKER_POLL_MS: "250" })
      if (typeof set === "string") throw new Error(set)
      expect(Duration.toMillis(set.presenceTtl)).toBe(4000)
      expect(Duration.toMillis(set.brokerPoll)).toBe(250)
      expect(yield* read({ PRESENCE_TTL_MS: "0" })).toMatch(/PRESENCE_TTL_MS/)
      expect(yield* read({ BROKER_POLL_MS: "soon" })).toMatch(/BROKER_POLL_MS/)
    }))

  it.effect("DELTA_COALESCE_MS: off (0) by default, 0 to 1000 ms", () =>
    Effect.gen(function*() {
      const defaults = yield* read({})
      if (typeof defaults === "string") throw new Error(defaults)
      expect(Duration.toMillis(defaults.deltaCoalesce)).toBe(0)
      const set = yield* read({ DELTA_COALESCE_MS: "20" })
      if (typeof set === "string") throw new Error(set)
      expect(Duration.toMillis(set.deltaCoalesce)).toBe(20)
      expect(yield* read({ DELTA_COALESCE_MS: "-1" })).toMatch(/DELTA_COALESCE_MS/)
      expect(yield* read({ DELTA_COALESCE_MS: "5000" })).toMatch(/DELTA_COALESCE_MS/)
    }))
})

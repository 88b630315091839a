import { describe, expect, it } from "@effect/vitest"
import { ConfigProvider, Duration, Effect, Either, Layer, Option, Redacted } from "effect"
import { AppConfig, defaults, makeTestConfig, validate } from "../../src/config/AppConfig.ts"
import { AppConfigLive } from "../../src/config/Environment.ts"

const production = (jwtSecret: string) =>
  makeTestConfig({
    env: "production",
    databaseUrl: Option.some(Redacted.make("postgres://db/agent_chat")),
    jwtSecret: Option.some(Redacted.make(jwtSecret))
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
      expect(yield* fromEnv({ APP_ENV: "production", DATABASE_URL: "postgres://db/x", JWT_SECRET: "abc" })).toBe(
        "StartupError: Config failed to start: JWT_SECRET must be at least 32 bytes (RFC 7518 section 3.2); it has 3"
      )
      expect(yield* fromEnv({ APP_ENV: "production", DATABASE_URL: "postgres://db/x", JWT_SECRET: "s".repeat(32) }))
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

/**
 * AppConfig: every setting, read once from the environment at startup and
 * validated for the mode. Only this module and `layers/` know the mode.
 */
import {
  Config,
  ConfigError,
  Context,
  Duration,
  Effect,
  Either,
  Layer,
  LogLevel,
  Option,
  Redacted,
  Schedule
} from "effect"
import { StartupError } from "../domain/Errors.ts"
import { MAX_CONTENT_CHARS, MAX_MEMBERS } from "../protocol/ClientFrames.ts"

export type AppEnv = "development" | "staging" | "production"

export interface RetryPolicy {
  /** How many attempts in all, the first included. */
  readonly attempts: number
  readonly baseDelay: Duration.Duration
  /** The whole retry may not take longer than this. */
  readonly maxElapsed: Duration.Duration
}

export interface DatabaseCheck {
  readonly interval: Duration.Duration
  readonly timeout: Duration.Duration
  readonly reconnectBase: Duration.Duration
  readonly reconnectMax: Duration.Duration
}

export interface AppConfigShape {
  readonly env: AppEnv
  readonly host: string
  readonly port: number
  readonly dataDir: string
  readonly databaseUrl: Option.Option<Redacted.Redacted>
  readonly databasePoolSize: number
  readonly jwtSecret: Option.Option<Redacted.Redacted>
  readonly jwtPublicKey: Option.Option<string>
  readonly jwtJwksUrl: Option.Option<URL>
  readonly jwtIssuer: Option.Option<string>
  readonly jwtAudience: Option.Option<string>
  readonly jwtClockSkew: Duration.Duration
  readonly startupRetry: RetryPolicy
  /** After startup: how often the database is checked, and how reconnection is paced while it is lost. */
  readonly databaseCheck: DatabaseCheck
  readonly maxFrameBytes: number
  readonly heartbeat: Duration.Duration
  readonly outboxCapacity: number
  readonly inboxCapacity: number
  readonly limits: Limits
  /** On shutdown, how long active runs may go on before they are cancelled. */
  readonly shutdownGrace: Duration.Duration
  readonly toolTimeout: Duration.Duration
  readonly runTimeout: Duration.Duration
  /** How long a run stays owned by its process without a renewal; past it, any process may end the run. */
  readonly runLease: Duration.Duration
  readonly maxAgentSteps: number
  readonly tracing: Tracing
}

export type LogFormat = "json" | "pretty"

export interface Tracing {
  /** OTLP/HTTP endpoint (spans go to `<endpoint>/v1/traces`); none disables export. */
  readonly otlpEndpoint: Option.Option<string>
  readonly serviceName: string
}

/** Limits against abusive or broken clients; each is refused with a clear error, never silently. */
export interface Limits {
  /** Allowed `Origin` headers on `/ws`, besides the server's own; empty allows any. Requests without one are not checked. */
  readonly allowedOrigins: ReadonlyArray<string>
  readonly connectionsPerUser: number
  /** Sustained client frames per second per connection (token bucket)… */
  readonly framesPerSecond: number
  /** …and how many may come at once. */
  readonly frameBurst: number
  /** Rate-limited frames in a row after which the connection is closed with 1008. */
  readonly floodThreshold: number
  readonly threadsPerConnection: number
  readonly messageChars: number
  readonly membersPerThread: number
}

export class AppConfig extends Context.Tag("agent-chat/AppConfig")<AppConfig, AppConfigShape>() {}

/** Exponential backoff with jitter, bounded in attempts and in total time. */
export const startupRetrySchedule = (policy: RetryPolicy) =>
  Schedule.exponential(policy.baseDelay, 2).pipe(
    Schedule.jittered,
    Schedule.intersect(Schedule.recurs(Math.max(0, policy.attempts - 1))),
    Schedule.upTo(policy.maxElapsed)
  )

/** While the database is lost: exponential and jittered from `reconnectBase`, each wait at most `reconnectMax`, forever. */
export const reconnectSchedule = (check: DatabaseCheck) =>
  Schedule.exponential(check.reconnectBase, 2).pipe(
    Schedule.jittered,
    Schedule.union(Schedule.spaced(check.reconnectMax))
  )

const positiveInt = (name: string, fallback: number, description: string) =>
  Config.integer(name).pipe(
    Config.validate({ message: `${name} must be a positive integer`, validation: (n) => n > 0 }),
    Config.withDefault(fallback),
    Config.withDescription(description)
  )

const millis = (name: string, fallback: number, description: string) =>
  Config.map(positiveInt(name, fallback, description), Duration.millis)

const optionalString = (name: string, description: string) =>
  Config.option(Config.nonEmptyString(name)).pipe(Config.withDescription(description))

const optionalSecret = (name: string, description: string) =>
  Config.option(Config.redacted(name)).pipe(
    Config.map(Option.filter((r) => Redacted.value(r).length > 0)),
    Config.withDescription(description)
  )

export const appConfig: Config.Config<AppConfigShape> = Config.all({
  env: Config.literal("development", "staging", "production")("APP_ENV").pipe(
    Config.withDefault("development" as const),
    Config.withDescription("development (embedded database, dev tokens), staging or production")
  ),
  host: Config.string("HOST").pipe(Config.withDefault("0.0.0.0"), Config.withDescription("interface to listen on")),
  port: Config.port("PORT").pipe(Config.withDefault(8080), Config.withDescription("HTTP and WebSocket port")),
  dataDir: Config.string("DATA_DIR").pipe(
    Config.withDefault("./data"),
    Config.withDescription("where development mode keeps its embedded database and dev secret")
  ),
  databaseUrl: optionalSecret("DATABASE_URL", "PostgreSQL URL; required in production and staging"),
  databasePoolSize: positiveInt("DATABASE_POOL_SIZE", 10, "connections in the database pool"),
  jwtSecret: optionalSecret(
    "JWT_SECRET",
    "HS256 secret for access tokens, at least 32 bytes outside development; production and staging require a key"
  ),
  jwtPublicKey: optionalString("JWT_PUBLIC_KEY", "PEM public key (RSA for RS256, P-256 for ES256) of access tokens"),
  jwtJwksUrl: Config.option(Config.url("JWT_JWKS_URL")).pipe(
    Config.withDescription("JWKS URL of the token issuer; keys are cached and rotated by kid")
  ),
  jwtIssuer: optionalString("JWT_ISSUER", "required `iss` of access tokens"),
  jwtAudience: optionalString("JWT_AUDIENCE", "required `aud` of access tokens"),
  jwtClockSkew: Config.map(
    Config.integer("JWT_CLOCK_SKEW_SECONDS").pipe(Config.withDefault(5)),
    Duration.seconds
  ),
  startupRetry: Config.all({
    attempts: positiveInt("STARTUP_RETRY_ATTEMPTS", 5, "attempts to reach a dependency at startup"),
    baseDelay: millis("STARTUP_RETRY_BASE_MS", 200, "first retry delay; doubles each time, with jitter"),
    maxElapsed: millis("STARTUP_RETRY_MAX_MS", 15_000, "give up on a dependency after this long")
  }),
  databaseCheck: Config.all({
    interval: millis("DATABASE_CHECK_MS", 2_000, "how often the database is checked after startup"),
    timeout: millis("DATABASE_CHECK_TIMEOUT_MS", 5_000, "a check slower than this fails"),
    reconnectBase: millis("DATABASE_RECONNECT_BASE_MS", 200, "first reconnect delay once the database is lost"),
    reconnectMax: millis("DATABASE_RECONNECT_MAX_MS", 5_000, "longest delay between reconnect attempts")
  }),
  maxFrameBytes: positiveInt("WS_MAX_FRAME_BYTES", 64 * 1024, "largest client frame; larger closes with 1009"),
  heartbeat: millis("WS_HEARTBEAT_MS", 25_000, "interval of WebSocket pings"),
  outboxCapacity: positiveInt("WS_OUTBOX_CAPACITY", 4096, "frames queued per connection before it is closed 1013"),
  inboxCapacity: positiveInt("WS_INBOX_CAPACITY", 256, "client frames queued per connection before it is closed 1008"),
  limits: Config.all({
    allowedOrigins: Config.string("WS_ALLOWED_ORIGINS").pipe(
      Config.withDefault(""),
      Config.map((list) => list.split(",").map((o) => o.trim()).filter((o) => o.length > 0)),
      Config.withDescription("comma-separated Origin allow-list for /ws, besides the server's own; empty allows any")
    ),
    connectionsPerUser: positiveInt("LIMIT_CONNECTIONS_PER_USER", 20, "open connections one user may hold"),
    framesPerSecond: positiveInt("LIMIT_FRAMES_PER_SECOND", 20, "sustained client frames per second"),
    frameBurst: positiveInt("LIMIT_FRAME_BURST", 40, "client frames allowed at once"),
    floodThreshold: positiveInt("LIMIT_FLOOD_FRAMES", 50, "rate-limited frames in a row before closing 1008"),
    threadsPerConnection: positiveInt("LIMIT_THREADS_PER_CONNECTION", 100, "threads one connection may join"),
    messageChars: Config.integer("LIMIT_MESSAGE_CHARS").pipe(
      Config.validate({
        message: `LIMIT_MESSAGE_CHARS must be from 1 to ${MAX_CONTENT_CHARS}`,
        validation: (n) => n >= 1 && n <= MAX_CONTENT_CHARS
      }),
      Config.withDefault(MAX_CONTENT_CHARS)
    ),
    membersPerThread: Config.integer("LIMIT_MEMBERS_PER_THREAD").pipe(
      Config.validate({
        message: `LIMIT_MEMBERS_PER_THREAD must be from 1 to ${MAX_MEMBERS + 1}`,
        validation: (n) => n >= 1 && n <= MAX_MEMBERS + 1
      }),
      Config.withDefault(MAX_MEMBERS + 1)
    )
  }),
  shutdownGrace: Config.map(
    Config.integer("SHUTDOWN_GRACE_MS").pipe(
      Config.validate({ message: "SHUTDOWN_GRACE_MS must be ≥ 0", validation: (n) => n >= 0 }),
      Config.withDefault(10_000),
      Config.withDescription("on SIGTERM, how long active runs may finish before they are cancelled")
    ),
    Duration.millis
  ),
  toolTimeout: millis("TOOL_TIMEOUT_MS", 10_000, "longest a tool call may take"),
  runTimeout: millis("RUN_TIMEOUT_MS", 120_000, "longest an agent run may take"),
  runLease: millis("RUN_LEASE_MS", 15_000, "a run's lease; a run its process has not renewed for this long is ended"),
  maxAgentSteps: positiveInt("AGENT_MAX_STEPS", 8, "model calls per run before it stops"),
  tracing: Config.all({
    otlpEndpoint: Config.option(Config.url("OTEL_EXPORTER_OTLP_ENDPOINT")).pipe(
      Config.map(Option.map((url) => url.toString().replace(/\/+$/, ""))),
      Config.withDescription("OTLP/HTTP collector, e.g. http://localhost:4318; spans are exported when set")
    ),
    serviceName: Config.string("OTEL_SERVICE_NAME").pipe(Config.withDefault("agent-chat"))
  })
})

export interface LoggingConfig {
  readonly format: LogFormat
  readonly level: LogLevel.LogLevel
}

/** How to log, read on its own so that even an invalid configuration is reported in the right format. */
export const loggingConfig: Config.Config<LoggingConfig> = Config.all({
  env: Config.string("APP_ENV").pipe(Config.withDefault("development")),
  format: Config.option(Config.literal("json", "pretty")("LOG_FORMAT")).pipe(
    Config.withDescription("json (default in production and staging) or pretty (default in development)")
  ),
  level: Config.logLevel("LOG_LEVEL").pipe(Config.withDefault(LogLevel.Info))
}).pipe(Config.map(({ env, format, level }) => ({
  format: Option.getOrElse(format, (): LogFormat => env === "development" ? "pretty" : "json"),
  level
})))

/**
 * RFC 7518 section 3.2: an HS256 key must be at least as long as the hash output, 256 bits. One
 * captured token is enough to test guesses at the secret offline, and a secret found signs tokens
 * for any user.
 */
export const MIN_HS256_SECRET_BYTES = 32

/** Checks what the mode requires, naming every missing or unfit variable at once. */
export const validate = (config: AppConfigShape): Either.Either<AppConfigShape, StartupError> => {
  // Development is local and issues its own dev tokens: any secret it is given will do.
  if (config.env === "development") return Either.right(config)
  const problems: Array<string> = []
  const missing: Array<string> = []
  if (Option.isNone(config.databaseUrl)) missing.push("DATABASE_URL")
  if (Option.isNone(config.jwtSecret) && Option.isNone(config.jwtPublicKey) && Option.isNone(config.jwtJwksUrl)) {
    missing.push("JWT_SECRET (or JWT_PUBLIC_KEY or JWT_JWKS_URL)")
  }
  if (missing.length > 0) problems.push(`APP_ENV=${config.env} requires ${missing.join(" and ")} to be set`)
  if (Option.isSome(config.jwtSecret)) {
    // Bytes, not characters: the key HMAC uses is the secret's UTF-8 encoding.
    const bytes = Buffer.byteLength(Redacted.value(config.jwtSecret.value), "utf8")
    if (bytes < MIN_HS256_SECRET_BYTES) {
      problems.push(
        `JWT_SECRET must be at least ${MIN_HS256_SECRET_BYTES} bytes (RFC 7518 section 3.2); it has ${bytes}`
      )
    }
  }
  return problems.length === 0
    ? Either.right(config)
    : Either.left(new StartupError({ component: "config", reason: problems.join("; ") }))
}

const load = Effect.gen(function*() {
  const config = yield* appConfig.pipe(
    Effect.mapError((error) =>
      new StartupError({ component: "config", reason: ConfigError.isConfigError(error) ? String(error) : "invalid" })
    )
  )
  return yield* validate(config)
})

/** The configuration from the environment (or whatever ConfigProvider is current). */
export const AppConfigLive: Layer.Layer<AppConfig, StartupError> = Layer.effect(AppConfig, load)

/** Defaults suitable for tests, with any field overridden. */
export const makeTestConfig = (overrides: Partial<AppConfigShape> = {}): AppConfigShape => ({
  env: "development",
  host: "127.0.0.1",
  port: 0,
  dataDir: "./data",
  databaseUrl: Option.none(),
  databasePoolSize: 4,
  jwtSecret: Option.some(Redacted.make("test-secret-0123456789-abcdefghij")),
  jwtPublicKey: Option.none(),
  jwtJwksUrl: Option.none(),
  jwtIssuer: Option.none(),
  jwtAudience: Option.none(),
  jwtClockSkew: Duration.seconds(5),
  startupRetry: { attempts: 3, baseDelay: Duration.millis(50), maxElapsed: Duration.seconds(2) },
  databaseCheck: {
    interval: Duration.millis(250),
    timeout: Duration.seconds(2),
    reconnectBase: Duration.millis(50),
    reconnectMax: Duration.millis(250)
  },
  maxFrameBytes: 64 * 1024,
  heartbeat: Duration.seconds(25),
  outboxCapacity: 4096,
  inboxCapacity: 256,
  // Generous, so suites that do not test limits are not slowed by them.
  limits: {
    allowedOrigins: [],
    connectionsPerUser: 10_000,
    framesPerSecond: 100_000,
    frameBurst: 100_000,
    floodThreshold: 100_000,
    threadsPerConnection: 10_000,
    messageChars: MAX_CONTENT_CHARS,
    membersPerThread: MAX_MEMBERS + 1
  },
  shutdownGrace: Duration.seconds(2),
  toolTimeout: Duration.seconds(10),
  runTimeout: Duration.seconds(120),
  runLease: Duration.seconds(15),
  maxAgentSteps: 8,
  tracing: { otlpEndpoint: Option.none(), serviceName: "agent-chat-test" },
  ...overrides
})

export const AppConfigTest = (overrides: Partial<AppConfigShape> = {}): Layer.Layer<AppConfig> =>
  Layer.succeed(AppConfig, makeTestConfig(overrides))

/**
 * The configuration as read from the environment (or whatever
 * ConfigProvider is current): each variable with its description, its
 * default taken from `defaults`, and the mode's rules checked by
 * `validate` before anything starts.
 */
import { Config, ConfigError, Duration, Effect, Layer, LogLevel, Option, Redacted } from "effect"
import { StartupError } from "../domain/Errors.ts"
import { MAX_CONTENT_CHARS, MAX_MEMBERS } from "../protocol/ClientFrames.ts"
import {
  AppConfig,
  type AppConfigShape,
  type AppEnv,
  defaults,
  LLM_PROVIDERS,
  type LlmConfig,
  type LogFormat,
  validate
} from "./AppConfig.ts"

const positiveInt = (name: string, fallback: number, description: string) =>
  Config.integer(name).pipe(
    Config.validate({ message: `${name} must be a positive integer`, validation: (n) => n > 0 }),
    Config.withDefault(fallback),
    Config.withDescription(description)
  )

const millis = (name: string, fallback: Duration.Duration, description: string) =>
  Config.map(positiveInt(name, Duration.toMillis(fallback), description), Duration.millis)

const between = (name: string, min: number, max: number, fallback: number, description: string) =>
  Config.integer(name).pipe(
    Config.validate({ message: `${name} must be from ${min} to ${max}`, validation: (n) => n >= min && n <= max }),
    Config.withDefault(fallback),
    Config.withDescription(description)
  )

const optionalString = (name: string, description: string) =>
  Config.option(Config.nonEmptyString(name)).pipe(Config.withDescription(description))

const optionalSecret = (name: string, description: string) =>
  Config.option(Config.redacted(name)).pipe(
    Config.map(Option.filter((r) => Redacted.value(r).length > 0)),
    Config.withDescription(description)
  )

/** APP_ENV, read by the configuration and by the logger alike. */
export const appEnv: Config.Config<AppEnv> = Config.literal("development", "staging", "production")("APP_ENV").pipe(
  Config.withDefault(defaults.env),
  Config.withDescription("development (embedded database, dev tokens), staging or production")
)

const { databaseCheck: check, limits, llm, startupRetry: retry } = defaults

const llmConfig: Config.Config<LlmConfig> = Config.all({
  provider: Config.option(Config.literal(...LLM_PROVIDERS)("LLM_PROVIDER")).pipe(
    Config.withDescription("openai-chat, openai-responses, anthropic or builtin; required in production and staging")
  ),
  baseUrl: Config.option(Config.url("LLM_BASE_URL")).pipe(
    Config.map(Option.map((url) => url.toString().replace(/\/+$/, ""))),
    Config.withDescription("the provider's API root, e.g. http://127.0.0.1:11434/v1; its public endpoint when unset")
  ),
  apiKey: optionalSecret("LLM_API_KEY", "the provider's API key; never logged"),
  model: optionalString("LLM_MODEL", "the model to use; required by the real providers"),
  maxOutputTokens: Config.option(
    Config.integer("LLM_MAX_OUTPUT_TOKENS").pipe(
      Config.validate({ message: "LLM_MAX_OUTPUT_TOKENS must be a positive integer", validation: (n) => n > 0 })
    )
  ).pipe(Config.withDescription("most tokens per model answer; the provider's default when unset")),
  temperature: Config.option(
    Config.number("LLM_TEMPERATURE").pipe(
      Config.validate({ message: "LLM_TEMPERATURE must be from 0 to 2", validation: (t) => t >= 0 && t <= 2 })
    )
  ).pipe(Config.withDescription("sampling temperature; the provider's default when unset")),
  thinkingTokens: Config.option(
    Config.integer("LLM_THINKING_TOKENS").pipe(
      Config.validate({ message: "LLM_THINKING_TOKENS must be at least 1024", validation: (n) => n >= 1024 })
    )
  ).pipe(Config.withDescription("anthropic: extended thinking with this token budget; off when unset")),
  historyChars: positiveInt("LLM_HISTORY_CHARS", llm.historyChars, "characters of thread history per model request"),
  requestTimeout: millis(
    "LLM_REQUEST_TIMEOUT_MS",
    llm.requestTimeout,
    "longest wait for the first byte of a model answer, and between two pieces"
  ),
  startupCheck: Config.boolean("LLM_STARTUP_CHECK").pipe(
    Config.withDefault(llm.startupCheck),
    Config.withDescription("check at startup that the provider serves LLM_MODEL (GET /models)")
  ),
  builtinPace: Config.map(
    Config.integer("BUILTIN_AGENT_PACE_MS").pipe(
      Config.validate({ message: "BUILTIN_AGENT_PACE_MS must be ≥ 0", validation: (n) => n >= 0 }),
      Config.withDefault(Duration.toMillis(llm.builtinPace)),
      Config.withDescription("the built-in agent's delay per streamed piece")
    ),
    Duration.millis
  ),
  rateLimitRetry: Config.all({
    attempts: positiveInt("LLM_RATE_LIMIT_RETRIES", llm.rateLimitRetry.attempts, "retries of a 429 answer"),
    maxDelay: millis("LLM_RATE_LIMIT_MAX_WAIT_MS", llm.rateLimitRetry.maxDelay, "longest Retry-After honoured")
  })
})

export const appConfig: Config.Config<AppConfigShape> = Config.all({
  env: appEnv,
  host: Config.string("HOST").pipe(Config.withDefault(defaults.host), Config.withDescription("interface to listen on")),
  port: Config.port("PORT").pipe(Config.withDefault(defaults.port), Config.withDescription("HTTP and WebSocket port")),
  dataDir: Config.string("DATA_DIR").pipe(
    Config.withDefault(defaults.dataDir),
    Config.withDescription("where development mode keeps its embedded database and dev secret")
  ),
  databaseUrl: optionalSecret("DATABASE_URL", "PostgreSQL URL; required in production and staging"),
  databasePoolSize: positiveInt("DATABASE_POOL_SIZE", defaults.databasePoolSize, "connections in the database pool"),
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
    Config.integer("JWT_CLOCK_SKEW_SECONDS").pipe(Config.withDefault(Duration.toSeconds(defaults.jwtClockSkew))),
    Duration.seconds
  ),
  startupRetry: Config.all({
    attempts: positiveInt("STARTUP_RETRY_ATTEMPTS", retry.attempts, "attempts to reach a dependency at startup"),
    baseDelay: millis("STARTUP_RETRY_BASE_MS", retry.baseDelay, "first retry delay; doubles each time, with jitter"),
    maxElapsed: millis("STARTUP_RETRY_MAX_MS", retry.maxElapsed, "give up on a dependency after this long")
  }),
  databaseCheck: Config.all({
    interval: millis("DATABASE_CHECK_MS", check.interval, "how often the database is checked after startup"),
    timeout: millis("DATABASE_CHECK_TIMEOUT_MS", check.timeout, "a check slower than this fails"),
    reconnectBase: millis("DATABASE_RECONNECT_BASE_MS", check.reconnectBase, "first reconnect delay once lost"),
    reconnectMax: millis("DATABASE_RECONNECT_MAX_MS", check.reconnectMax, "longest delay between reconnect attempts")
  }),
  maxFrameBytes: positiveInt("WS_MAX_FRAME_BYTES", defaults.maxFrameBytes, "largest client frame; larger closes 1009"),
  heartbeat: millis("WS_HEARTBEAT_MS", defaults.heartbeat, "interval of WebSocket pings"),
  outboxCapacity: positiveInt("WS_OUTBOX_CAPACITY", defaults.outboxCapacity, "frames queued per connection; then 1013"),
  catchUpBuffer: positiveInt(
    "WS_CATCHUP_BUFFER",
    defaults.catchUpBuffer,
    "live events held per joined thread while a connection catches up from the log; then 1013"
  ),
  inboxCapacity: positiveInt("WS_INBOX_CAPACITY", defaults.inboxCapacity, "client frames queued unhandled; then 1008"),
  limits: Config.all({
    allowedOrigins: Config.string("WS_ALLOWED_ORIGINS").pipe(
      Config.withDefault(""),
      Config.map((list) => list.split(",").map((o) => o.trim()).filter((o) => o.length > 0)),
      Config.withDescription("comma-separated Origin allow-list for /ws, besides the server's own; empty allows any")
    ),
    connectionsPerUser: positiveInt("LIMIT_CONNECTIONS_PER_USER", limits.connectionsPerUser, "connections per user"),
    framesPerSecond: positiveInt("LIMIT_FRAMES_PER_SECOND", limits.framesPerSecond, "sustained client frames per s"),
    frameBurst: positiveInt("LIMIT_FRAME_BURST", limits.frameBurst, "client frames allowed at once"),
    floodThreshold: positiveInt("LIMIT_FLOOD_FRAMES", limits.floodThreshold, "refused frames in a row before 1008"),
    threadsPerConnection: positiveInt("LIMIT_THREADS_PER_CONNECTION", limits.threadsPerConnection, "joins per socket"),
    messageChars: between("LIMIT_MESSAGE_CHARS", 1, MAX_CONTENT_CHARS, limits.messageChars, "longest message"),
    membersPerThread: between("LIMIT_MEMBERS_PER_THREAD", 1, MAX_MEMBERS + 1, limits.membersPerThread, "members")
  }),
  shutdownGrace: Config.map(
    Config.integer("SHUTDOWN_GRACE_MS").pipe(
      Config.validate({ message: "SHUTDOWN_GRACE_MS must be ≥ 0", validation: (n) => n >= 0 }),
      Config.withDefault(Duration.toMillis(defaults.shutdownGrace)),
      Config.withDescription("on SIGTERM, how long active runs may finish before they are cancelled")
    ),
    Duration.millis
  ),
  toolTimeout: millis("TOOL_TIMEOUT_MS", defaults.toolTimeout, "longest a tool call may take"),
  runTimeout: millis("RUN_TIMEOUT_MS", defaults.runTimeout, "longest an agent run may take"),
  runLease: millis("RUN_LEASE_MS", defaults.runLease, "a run not renewed by its process for this long is ended"),
  maxAgentSteps: positiveInt("AGENT_MAX_STEPS", defaults.maxAgentSteps, "model calls per run before it stops"),
  deltaCoalesce: Config.map(
    between("DELTA_COALESCE_MS", 0, 1000, Duration.toMillis(defaults.deltaCoalesce), "deltas within it are one event"),
    Duration.millis
  ),
  llm: llmConfig,
  broker: Config.literal("memory", "redis", "postgres")("BROKER").pipe(
    Config.withDefault(defaults.broker),
    Config.withDescription("memory (one node), redis (REDIS_URL) or postgres (LISTEN/NOTIFY on DATABASE_URL)")
  ),
  redisUrl: optionalSecret("REDIS_URL", "the Redis of BROKER=redis, e.g. redis://127.0.0.1:6379"),
  brokerPoll: millis(
    "BROKER_POLL_MS",
    defaults.brokerPoll,
    "while the broker is lost, how often joined threads are read"
  ),
  presenceTtl: millis("PRESENCE_TTL_MS", defaults.presenceTtl, "a node's users stay online this long without renewal"),
  tracing: Config.all({
    otlpEndpoint: Config.option(Config.url("OTEL_EXPORTER_OTLP_ENDPOINT")).pipe(
      Config.map(Option.map((url) => url.toString().replace(/\/+$/, ""))),
      Config.withDescription("OTLP/HTTP collector, e.g. http://localhost:4318; spans are exported when set")
    ),
    serviceName: Config.string("OTEL_SERVICE_NAME").pipe(Config.withDefault(defaults.tracing.serviceName))
  })
})

export interface LoggingConfig {
  readonly format: LogFormat
  readonly level: LogLevel.LogLevel
}

/** How to log, read on its own so that even an invalid configuration is reported in the right format. */
export const loggingConfig: Config.Config<LoggingConfig> = Config.all({
  env: appEnv,
  format: Config.option(Config.literal("json", "pretty")("LOG_FORMAT")).pipe(
    Config.withDescription("json (default in production and staging) or pretty (default in development)")
  ),
  level: Config.logLevel("LOG_LEVEL").pipe(Config.withDefault(LogLevel.Info))
}).pipe(Config.map(({ env, format, level }) => ({
  format: Option.getOrElse(format, (): LogFormat => env === "development" ? "pretty" : "json"),
  level
})))

const load = Effect.gen(function*() {
  const config = yield* appConfig.pipe(
    Effect.mapError((error) =>
      new StartupError({ component: "config", reason: ConfigError.isConfigError(error) ? String(error) : "invalid" })
    )
  )
  return yield* validate(config)
})

/** The configuration from the environment, validated for its mode. */
export const AppConfigLive: Layer.Layer<AppConfig, StartupError> = Layer.effect(AppConfig, load)

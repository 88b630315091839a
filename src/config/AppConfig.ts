/**
 * AppConfig: every setting, with its default written once (`defaults`),
 * read from the environment at startup (Environment.ts) and validated for
 * the mode. Only this folder and `layers/` know the mode.
 */
import { Context, Duration, Either, Layer, Option, Redacted, Schedule } from "effect"
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
  /** Live events held per joined thread while a connection catches up from the log; past it, 1013. */
  readonly catchUpBuffer: number
  readonly inboxCapacity: number
  readonly limits: Limits
  /** On shutdown, how long active runs may go on before they are cancelled. */
  readonly shutdownGrace: Duration.Duration
  readonly toolTimeout: Duration.Duration
  readonly runTimeout: Duration.Duration
  /** How long a run stays owned by its process without a renewal; past it, any process may end the run. */
  readonly runLease: Duration.Duration
  readonly maxAgentSteps: number
  /** Consecutive deltas of a run that arrive within this are one event (zero: every delta its own event). */
  readonly deltaCoalesce: Duration.Duration
  readonly llm: LlmConfig
  /** How stored events reach the other nodes: `memory` (one node), `redis` (REDIS_URL) or `postgres`. */
  readonly broker: BrokerKind
  /** The Redis of `BROKER=redis`; it may carry a password. */
  readonly redisUrl: Option.Option<Redacted.Redacted>
  /** While the broker is lost, how often each joined thread is read from the log instead. */
  readonly brokerPoll: Duration.Duration
  /** How long a node's users count as online without its renewal: a crashed node's users drop out within it. */
  readonly presenceTtl: Duration.Duration
  readonly tracing: Tracing
}

export type BrokerKind = "memory" | "redis" | "postgres"

export const LLM_PROVIDERS = ["openai-chat", "openai-responses", "anthropic", "builtin"] as const
export type LlmProvider = typeof LLM_PROVIDERS[number]

/** The language model of the runs (LLM_*). */
export interface LlmConfig {
  /** None: the built-in agent in development; production and staging refuse to start without one. */
  readonly provider: Option.Option<LlmProvider>
  /** None: the provider's public endpoint. */
  readonly baseUrl: Option.Option<string>
  readonly apiKey: Option.Option<Redacted.Redacted>
  /** Required by the real providers. */
  readonly model: Option.Option<string>
  readonly maxOutputTokens: Option.Option<number>
  readonly temperature: Option.Option<number>
  /** Anthropic: extended thinking with this budget of tokens (at least 1024); none leaves it off. */
  readonly thinkingTokens: Option.Option<number>
  /** How much of the thread's history (in characters) a model request carries, newest first. */
  readonly historyChars: number
  /** To the first byte of an answer, and between two pieces of its stream. */
  readonly requestTimeout: Duration.Duration
  /** Ask the provider at startup whether it serves the model. */
  readonly startupCheck: boolean
  /** The built-in agent's delay per streamed piece, so a person sees it stream (0 in tests). */
  readonly builtinPace: Duration.Duration
  /** Rate-limited answers (429) retried, each after its Retry-After, within these bounds. */
  readonly rateLimitRetry: { readonly attempts: number; readonly maxDelay: Duration.Duration }
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

/** Every setting's default, for the environment's config and the tests' alike. */
export const defaults = {
  env: "development",
  host: "0.0.0.0",
  port: 8080,
  dataDir: "./data",
  databaseUrl: Option.none(),
  databasePoolSize: 10,
  jwtSecret: Option.none(),
  jwtPublicKey: Option.none(),
  jwtJwksUrl: Option.none(),
  jwtIssuer: Option.none(),
  jwtAudience: Option.none(),
  jwtClockSkew: Duration.seconds(5),
  startupRetry: { attempts: 5, baseDelay: Duration.millis(200), maxElapsed: Duration.seconds(15) },
  databaseCheck: {
    interval: Duration.seconds(2),
    timeout: Duration.seconds(5),
    reconnectBase: Duration.millis(200),
    reconnectMax: Duration.seconds(5)
  },
  maxFrameBytes: 64 * 1024,
  heartbeat: Duration.seconds(25),
  outboxCapacity: 4096,
  catchUpBuffer: 4096,
  inboxCapacity: 256,
  limits: {
    allowedOrigins: [],
    connectionsPerUser: 20,
    framesPerSecond: 20,
    frameBurst: 40,
    floodThreshold: 50,
    threadsPerConnection: 100,
    messageChars: MAX_CONTENT_CHARS,
    membersPerThread: MAX_MEMBERS + 1
  },
  shutdownGrace: Duration.seconds(10),
  toolTimeout: Duration.seconds(10),
  runTimeout: Duration.minutes(2),
  runLease: Duration.seconds(15),
  maxAgentSteps: 8,
  deltaCoalesce: Duration.zero,
  llm: {
    provider: Option.none(),
    baseUrl: Option.none(),
    apiKey: Option.none(),
    model: Option.none(),
    maxOutputTokens: Option.none(),
    temperature: Option.none(),
    thinkingTokens: Option.none(),
    historyChars: 32_000,
    requestTimeout: Duration.seconds(60),
    startupCheck: true,
    builtinPace: Duration.millis(30),
    rateLimitRetry: { attempts: 3, maxDelay: Duration.seconds(20) }
  },
  broker: "memory",
  redisUrl: Option.none(),
  brokerPoll: Duration.seconds(1),
  presenceTtl: Duration.seconds(10),
  tracing: { otlpEndpoint: Option.none(), serviceName: "agent-chat" }
} as const satisfies AppConfigShape

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

/**
 * RFC 7518 section 3.2: an HS256 key must be at least as long as the hash output, 256 bits. One
 * captured token is enough to test guesses at the secret offline, and a secret found signs tokens
 * for any user.
 */
export const MIN_HS256_SECRET_BYTES = 32

/** Each remote provider's public endpoint, used when LLM_BASE_URL is not set. */
export const defaultLlmBaseUrl: Record<Exclude<LlmProvider, "builtin">, string> = {
  "openai-chat": "https://api.openai.com/v1",
  "openai-responses": "https://api.openai.com/v1",
  // The Messages API client appends /v1/messages itself.
  anthropic: "https://api.anthropic.com"
}

/** What any mode requires of the model settings. */
const brokerProblems = (config: AppConfigShape): Array<string> =>
  config.broker === "redis" && Option.isNone(config.redisUrl) ? ["BROKER=redis requires REDIS_URL to be set"] : []

const llmProblems = (llm: LlmConfig): Array<string> => {
  if (Option.isNone(llm.provider) || llm.provider.value === "builtin") return []
  const provider = llm.provider.value
  const problems: Array<string> = []
  if (Option.isNone(llm.model)) problems.push(`LLM_PROVIDER=${provider} requires LLM_MODEL to be set`)
  if (Option.isNone(llm.baseUrl) && Option.isNone(llm.apiKey)) {
    problems.push(`LLM_PROVIDER=${provider} at ${defaultLlmBaseUrl[provider]} requires LLM_API_KEY to be set`)
  }
  return problems
}

/** Checks what the mode requires, naming every missing or unfit variable at once. */
export const validate = (config: AppConfigShape): Either.Either<AppConfigShape, StartupError> => {
  const problems: Array<string> = [...llmProblems(config.llm), ...brokerProblems(config)]
  // Development is local and issues its own dev tokens: any secret it is given will do.
  if (config.env === "development") {
    return problems.length === 0
      ? Either.right(config)
      : Either.left(new StartupError({ component: "config", reason: problems.join("; ") }))
  }
  const missing: Array<string> = []
  if (Option.isNone(config.databaseUrl)) missing.push("DATABASE_URL")
  if (Option.isNone(config.jwtSecret) && Option.isNone(config.jwtPublicKey) && Option.isNone(config.jwtJwksUrl)) {
    missing.push("JWT_SECRET (or JWT_PUBLIC_KEY or JWT_JWKS_URL)")
  }
  if (Option.isNone(config.llm.provider)) {
    missing.push("LLM_PROVIDER (openai-chat, openai-responses, anthropic, or builtin for the offline agent)")
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

/** The configuration of tests: the defaults, then what tests want different, then `overrides`. */
export const makeTestConfig = (overrides: Partial<AppConfigShape> = {}): AppConfigShape => ({
  ...defaults,
  host: "127.0.0.1",
  port: 0,
  databasePoolSize: 4,
  jwtSecret: Option.some(Redacted.make("test-secret-0123456789-abcdefghij")),
  startupRetry: { attempts: 3, baseDelay: Duration.millis(50), maxElapsed: Duration.seconds(2) },
  databaseCheck: {
    interval: Duration.millis(250),
    timeout: Duration.seconds(2),
    reconnectBase: Duration.millis(50),
    reconnectMax: Duration.millis(250)
  },
  // Generous, so suites that do not test limits are not slowed by them.
  limits: {
    ...defaults.limits,
    connectionsPerUser: 10_000,
    framesPerSecond: 100_000,
    frameBurst: 100_000,
    floodThreshold: 100_000,
    threadsPerConnection: 10_000
  },
  shutdownGrace: Duration.seconds(2),
  llm: { ...defaults.llm, builtinPace: Duration.zero, requestTimeout: Duration.seconds(10) },
  tracing: { otlpEndpoint: Option.none(), serviceName: "agent-chat-test" },
  ...overrides
})

export const AppConfigTest = (overrides: Partial<AppConfigShape> = {}): Layer.Layer<AppConfig> =>
  Layer.succeed(AppConfig, makeTestConfig(overrides))

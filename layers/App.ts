/**
 * The production graph, with each layer chosen from AppConfig: the mode
 * decides here, and nowhere else.
 */
import { Effect, Layer, LogLevel, Option } from "effect"
import { AuthLive, type AuthOptions } from "../src/auth/Auth.ts"
import { DevTokensLive } from "../src/auth/DevTokens.ts"
import { BuiltinModelLive } from "../src/builtin/BuiltinModel.ts"
import { BuiltinToolsLive } from "../src/builtin/BuiltinTools.ts"
import { AppConfig } from "../src/config/AppConfig.ts"
import { loadOrCreateDevSecret } from "../src/config/DevSecret.ts"
import { AppConfigLive, type LoggingConfig, loggingConfig } from "../src/config/Environment.ts"
import * as Database from "../src/database/Database.ts"
import { BrokerInProcess } from "../src/eventlog/Broker.ts"
import { BrokerPostgres } from "../src/eventlog/PgBroker.ts"
import { BrokerRedis } from "../src/eventlog/RedisBroker.ts"
import { configuredRemoteModel } from "../src/llm/Providers.ts"
import { LoggingLive } from "../src/observability/Logging.ts"
import { server } from "./Graph.ts"

const database = Layer.unwrapEffect(Effect.map(AppConfig, (config) =>
  Option.match(config.databaseUrl, {
    onSome: (url) => Database.layerUrl({ url, poolSize: config.databasePoolSize, retry: config.startupRetry }),
    // Only development gets here: validation requires DATABASE_URL elsewhere.
    onNone: () => Database.layerEmbedded({ dataDir: Option.some(`${config.dataDir}/pg`), retry: config.startupRetry })
  })))

const auth = Layer.unwrapEffect(Effect.gen(function*() {
  const config = yield* AppConfig
  const development = config.env === "development"
  // Development always has a secret, for its dev tokens; elsewhere only a configured one counts.
  const secret = Option.isSome(config.jwtSecret)
    ? Option.some(config.jwtSecret.value)
    : development
    ? Option.some(yield* loadOrCreateDevSecret(config.dataDir))
    : Option.none()
  const options: AuthOptions = {
    ...Option.match(secret, { onNone: () => ({}), onSome: (secret) => ({ secret }) }),
    ...Option.match(config.jwtPublicKey, { onNone: () => ({}), onSome: (publicKey) => ({ publicKey }) }),
    ...Option.match(config.jwtJwksUrl, { onNone: () => ({}), onSome: (jwksUrl) => ({ jwksUrl }) }),
    issuer: config.jwtIssuer,
    audience: config.jwtAudience,
    clockSkew: config.jwtClockSkew,
    requireExpiry: !development
  }
  return development && Option.isSome(secret)
    ? Layer.merge(AuthLive(options), DevTokensLive({ ...options, secret: secret.value }))
    : AuthLive(options)
}))

/** LLM_PROVIDER's model; the built-in agent when it says so, or in development when it is not set. */
const model = Layer.unwrapEffect(Effect.map(AppConfig, (config) =>
  Option.match(configuredRemoteModel(config), {
    onNone: () => BuiltinModelLive,
    onSome: (remote) => remote
  })))

/** BROKER's broker: in-process for one node, Redis or PostgreSQL's LISTEN/NOTIFY for several. */
const broker = Layer.unwrapEffect(
  Effect.map(AppConfig, (config) =>
    config.broker === "redis" && Option.isSome(config.redisUrl)
      ? BrokerRedis({ url: config.redisUrl.value, retry: config.startupRetry })
      : config.broker === "postgres"
      ? BrokerPostgres(config.databaseUrl)
      : BrokerInProcess)
)

export const AppLive = server({
  config: AppConfigLive,
  database,
  broker,
  auth,
  model,
  tools: BuiltinToolsLive
}).pipe(Layer.provide(AppConfigLive))

/** The logger, chosen from LOG_FORMAT, LOG_LEVEL and APP_ENV alone, so a configuration error is logged by it too. */
const logger = Layer.unwrapEffect(
  Effect.map(
    Effect.orElseSucceed(loggingConfig, (): LoggingConfig => ({ format: "json", level: LogLevel.Info })),
    (config) => LoggingLive(config.format, config.level)
  )
)

/** The process: the server until it is interrupted, or its startup error, logged. */
export const program = Layer.launch(AppLive).pipe(
  Effect.tapErrorTag("StartupError", (error) => Effect.logError(error.message)),
  Effect.provide(logger)
)

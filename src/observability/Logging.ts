/**
 * Logs: one JSON object per line in production and staging (level, time,
 * message, then the annotations in scope: component, connection_id,
 * user_id, thread_id, run_id, ...), pretty lines in development.
 * `LOG_FORMAT` and `LOG_LEVEL` override the defaults.
 */
import { Cause, HashMap, Inspectable, Layer, Logger, type LogLevel } from "effect"
import type { LogFormat } from "../config/AppConfig.ts"

const text = (message: unknown): string => {
  if (Array.isArray(message)) return message.map(text).join(" ")
  return typeof message === "string" ? message : Inspectable.format(Inspectable.toJSON(message))
}

/** A logger writing flat JSON lines to `write` (standard output by default). */
export const jsonLogger = (write: (line: string) => void = (line) => process.stdout.write(line)) =>
  Logger.make(({ annotations, cause, date, logLevel, message }) => {
    const line: Record<string, unknown> = {
      level: logLevel.label.toLowerCase(),
      time: date.toISOString(),
      message: text(message)
    }
    for (const [key, value] of HashMap.toEntries(annotations)) {
      if (!(key in line)) line[key] = Inspectable.toJSON(value)
    }
    if (!Cause.isEmpty(cause)) line.cause = Cause.pretty(cause, { renderErrorCause: true })
    write(JSON.stringify(line) + "\n")
  })

export const LoggingLive = (format: LogFormat, level: LogLevel.LogLevel) =>
  Layer.merge(
    Logger.replace(Logger.defaultLogger, format === "json" ? jsonLogger() : Logger.prettyLoggerDefault),
    Logger.minimumLogLevel(level)
  )

/**
 * The development signing secret: made once and kept in DATA_DIR, so dev
 * tokens survive restarts. Production never gets here (JWT_SECRET is
 * required there).
 */
import { Effect, Redacted } from "effect"
import { randomBytes } from "node:crypto"
import { mkdirSync, readFileSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { StartupError } from "../domain/Errors.ts"

export const loadOrCreateDevSecret = (dataDir: string) =>
  Effect.try({
    try: () => {
      const file = join(dataDir, "dev-jwt-secret")
      mkdirSync(dataDir, { recursive: true })
      try {
        const existing = readFileSync(file, "utf8").trim()
        if (existing.length >= 32) return Redacted.make(existing)
      } catch {
        // absent: made below
      }
      const secret = randomBytes(32).toString("base64url")
      writeFileSync(file, secret + "\n", { mode: 0o600 })
      return Redacted.make(secret)
    },
    catch: (cause) => new StartupError({ component: "auth", reason: `cannot keep the dev secret in ${dataDir}`, cause })
  })

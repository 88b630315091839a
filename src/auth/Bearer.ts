/**
 * The HTTP API's authentication (PROTOCOL.md section 5): the caller's
 * principal from `Authorization: Bearer …`, else a 401 (or a 503 when the
 * key set cannot be reached), in the API's error shape. Shared by every
 * route that takes a token.
 */
import { HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { Effect } from "effect"
import { Auth, type Principal } from "./Auth.ts"

const failure = (status: number, error: string, reason: string) =>
  HttpServerResponse.unsafeJson({ error, reason }, { status })

/** Runs `handler` with the caller's principal, or answers 401 / 503 without running it. */
export const authenticated = <A, E, R>(
  handler: (principal: Principal) => Effect.Effect<A, E, R>
) =>
  Effect.gen(function*() {
    const request = yield* HttpServerRequest.HttpServerRequest
    const match = /^Bearer\s+(\S+)\s*$/i.exec(request.headers.authorization ?? "")
    if (match === null) return failure(401, "unauthorized", "missing bearer token")
    const principal = yield* (yield* Auth).verify(match[1]!).pipe(Effect.either)
    if (principal._tag === "Left") {
      return principal.left.unavailable === true
        ? failure(503, "unavailable", principal.left.reason)
        : failure(401, "unauthorized", principal.left.reason)
    }
    return yield* handler(principal.right)
  })

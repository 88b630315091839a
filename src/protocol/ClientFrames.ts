/**
 * Client-to-server frames (PROTOCOL.md section 2) and their decoding.
 * Decoding never throws: every failure becomes a message naming the field.
 */
import { Either, ParseResult, Schema } from "effect"

/**
 * Any string a client sends. PostgreSQL's `text` refuses U+0000 (NUL), and a query with a refused
 * parameter fails like an outage: `unavailable`, and the database monitor checks at once. Refused
 * here, a NUL is the client's mistake, answered as one, before any SQL. Nothing else needs refusing:
 * the other control characters are stored as sent, and node-pg's UTF-8 encoding turns a lone
 * surrogate (which JSON.parse accepts) into U+FFFD rather than failing.
 */
export const Text = Schema.String.pipe(
  Schema.filter((s) => !s.includes("\u0000"), { message: () => "must not contain U+0000 (NUL)" })
)
/** A user, thread or run id, wherever it comes from: a frame, a URL path, a token's `sub`. */
export const Identifier = Text.pipe(Schema.minLength(1), Schema.maxLength(128))
export const RequestId = Text.pipe(Schema.minLength(1), Schema.maxLength(64))

export const MAX_CONTENT_CHARS = 16_000
export const MAX_TITLE_CHARS = 200
export const MAX_MEMBERS = 100

export const Ping = Schema.Struct({
  type: Schema.Literal("ping"),
  id: Schema.optional(RequestId)
})

export const CreateThread = Schema.Struct({
  type: Schema.Literal("create_thread"),
  id: RequestId,
  title: Schema.optional(Text.pipe(Schema.maxLength(MAX_TITLE_CHARS))),
  members: Schema.optional(Schema.Array(Identifier).pipe(Schema.maxItems(MAX_MEMBERS)))
})

export const JoinThread = Schema.Struct({
  type: Schema.Literal("join_thread"),
  id: RequestId,
  thread_id: Identifier,
  after_seq: Schema.optional(Schema.Int.pipe(Schema.nonNegative()))
})

export const LeaveThread = Schema.Struct({
  type: Schema.Literal("leave_thread"),
  id: RequestId,
  thread_id: Identifier
})

/**
 * An addition to protocol 1: what a `send_message` to a thread with a run in progress does. `reject`
 * (the default) answers `busy`; `interrupt` cancels that run and starts this message's; `enqueue` stores
 * the message now and starts its run once the runs before it have ended.
 */
export const OnBusy = Schema.Literal("reject", "interrupt", "enqueue")
export type OnBusy = typeof OnBusy.Type

export const SendMessage = Schema.Struct({
  type: Schema.Literal("send_message"),
  id: RequestId,
  thread_id: Identifier,
  content: Text.pipe(Schema.minLength(1), Schema.maxLength(MAX_CONTENT_CHARS)),
  on_busy: Schema.optional(OnBusy)
})

export const CancelRun = Schema.Struct({
  type: Schema.Literal("cancel_run"),
  id: RequestId,
  run_id: Identifier
})

/** An addition to protocol 1: replaces the connection's access token before it expires. */
export const RefreshToken = Schema.Struct({
  type: Schema.Literal("refresh_token"),
  id: RequestId,
  token: Text.pipe(Schema.minLength(1), Schema.maxLength(8192))
})

const UserIds = Schema.Array(Identifier).pipe(Schema.minItems(1), Schema.maxItems(MAX_MEMBERS))

/** Additions to protocol 1: the thread's creator adds and removes members; a member may remove himself. */
export const AddMembers = Schema.Struct({
  type: Schema.Literal("add_members"),
  id: RequestId,
  thread_id: Identifier,
  user_ids: UserIds
})

export const RemoveMembers = Schema.Struct({
  type: Schema.Literal("remove_members"),
  id: RequestId,
  thread_id: Identifier,
  user_ids: UserIds
})

export const ClientFrame = Schema.Union(
  Ping,
  CreateThread,
  JoinThread,
  LeaveThread,
  SendMessage,
  CancelRun,
  RefreshToken,
  AddMembers,
  RemoveMembers
)
export type ClientFrame = typeof ClientFrame.Type

const byType: Record<string, Schema.Schema.AnyNoContext> = {
  ping: Ping,
  create_thread: CreateThread,
  join_thread: JoinThread,
  leave_thread: LeaveThread,
  send_message: SendMessage,
  cancel_run: CancelRun,
  refresh_token: RefreshToken,
  add_members: AddMembers,
  remove_members: RemoveMembers
}

export interface FrameDecodeError {
  /** The request id, when the frame had a usable one, so the error can carry it as `ref`. */
  readonly ref: string | undefined
  readonly message: string
}

const isRequestId = Schema.is(RequestId)
const refOf = (value: Record<string, unknown>): string | undefined => isRequestId(value.id) ? value.id : undefined

/** The first problem of a failed decode, naming the field: `invalid field "content": …`. */
export const describe = (error: ParseResult.ParseError): string => {
  const issues = ParseResult.ArrayFormatter.formatErrorSync(error)
  const first = issues[0]
  if (first === undefined) return "invalid frame"
  const path = first.path.map(String).join(".")
  if (first._tag === "Missing") return `missing field "${path}"`
  return path === "" ? first.message : `invalid field "${path}": ${first.message}`
}

/** Parses one text frame into a typed client frame, or says what is wrong with it. */
export const decodeFrame = (text: string): Either.Either<ClientFrame, FrameDecodeError> => {
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch {
    return Either.left({ ref: undefined, message: "frame is not valid JSON" })
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    return Either.left({ ref: undefined, message: "frame must be a JSON object" })
  }
  const record = value as Record<string, unknown>
  const ref = refOf(record)
  if (typeof record.type !== "string") {
    return Either.left({ ref, message: "missing field \"type\"" })
  }
  const schema = Object.hasOwn(byType, record.type) ? byType[record.type] : undefined
  if (schema === undefined) {
    return Either.left({ ref, message: `unknown type "${record.type.slice(0, 64)}"` })
  }
  return Either.mapLeft(
    Schema.decodeUnknownEither(schema, { errors: "first" })(record) as Either.Either<
      ClientFrame,
      ParseResult.ParseError
    >,
    (error) => ({ ref, message: describe(error) })
  )
}

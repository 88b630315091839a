/**
 * The Effect face of the SDK: a scoped connection (closed with its scope),
 * the requests as Effects failing with the SDK's tagged errors, and the
 * events as Streams (`client.stream`, `thread.stream`, `run.stream`).
 */
import { Effect, type Scope, type Stream } from "effect"
import { AgentChatClient, type ClientOptions, type CreateThreadOptions, type JoinOptions } from "./Client.ts"
import { type ChatError, ClientClosed, ConnectError, ConnectionLost, RequestError, RequestTimeout } from "./Errors.ts"
import type { Run } from "./Run.ts"
import type { SendOptions, Thread } from "./Thread.ts"
import type { ClientEvent, TerminalEvent, ThreadEvent } from "./Types.ts"

const chatError = (error: unknown): ChatError =>
  error instanceof RequestError || error instanceof RequestTimeout || error instanceof ConnectionLost ||
    error instanceof ClientClosed
    ? error
    : new RequestError("internal", String(error))

const attempt = <A>(run: () => Promise<A>): Effect.Effect<A, ChatError> =>
  Effect.tryPromise({ try: run, catch: chatError })

/** A connected client, closed when the scope closes. */
export const connect = (options: ClientOptions): Effect.Effect<AgentChatClient, ConnectError, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.tryPromise({
      try: () => AgentChatClient.connect(options),
      catch: (error) => error instanceof ConnectError ? error : new ConnectError(1006, String(error))
    }),
    (client) => Effect.sync(() => client.close())
  )

export const createThread = (
  client: AgentChatClient,
  options?: CreateThreadOptions
): Effect.Effect<Thread, ChatError> => attempt(() => client.createThread(options))

export const join = (
  client: AgentChatClient,
  threadId: string,
  options?: JoinOptions
): Effect.Effect<Thread, ChatError> => attempt(() => client.join(threadId, options))

export const send = (thread: Thread, content: string, options?: SendOptions): Effect.Effect<Run, ChatError> =>
  attempt(() => thread.send(content, options))

/** The run's terminal event. */
export const done = (run: Run): Effect.Effect<TerminalEvent, ChatError> => attempt(() => run.done)

export const cancel = (run: Run): Effect.Effect<void, ChatError> => attempt(() => run.cancel())

/** Every client event while the stream runs. */
export const events = (client: AgentChatClient): Stream.Stream<ClientEvent> => client.stream

/** The run's events, ending with its terminal event. */
export const runEvents = (run: Run): Stream.Stream<ThreadEvent, ClientClosed> => run.stream

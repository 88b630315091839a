/**
 * `agent-chat/client`: the typed SDK of the wire protocol (docs/PROTOCOL.md).
 *
 *     const client = await connect({ url: "ws://localhost:8080/ws", token: () => fetchToken() })
 *     const thread = await client.createThread({ title: "Sums" })
 *     const run = await thread.send("what is 2+2")
 *     for await (const event of run.events) if (event.event_type === "agent_response_delta") write(event.data.delta)
 *     const end = await run.done
 *
 * Beside the promises, `client.stream`, `thread.stream` and `run.stream` are Effect Streams, and
 * `AgentChat` holds the requests as Effects (`AgentChat.connect` is scoped).
 */
export { CloseCode, ErrorCode, PROTOCOL_VERSION, RunErrorCode } from "../protocol/Codes.ts"
export { EventData, EventFrame } from "../protocol/Events.ts"
export { AgentChatClient, connect } from "./Client.ts"
export type { ClientOptions, ConnectionState, CreateThreadOptions, JoinOptions, ReconnectOptions } from "./Client.ts"
export * as AgentChat from "./Effect.ts"
export { type ChatError, ClientClosed, ConnectError, ConnectionLost, RequestError, RequestTimeout } from "./Errors.ts"
export { Run } from "./Run.ts"
export type { WebSocketConstructor, WebSocketLike } from "./Socket.ts"
export { type SendOptions, Thread } from "./Thread.ts"
export type * from "./Types.ts"

/**
 * The wire protocol, version 1 with its additions (docs/PROTOCOL.md): the
 * Schemas of every frame in both directions and of every event's data, and
 * the close, error and refusal codes. The server decodes client frames and
 * encodes its own through these; the typed client decodes with them.
 */
export * from "./ClientFrames.ts"
export * from "./Codes.ts"
export * from "./Events.ts"
export * from "./ServerFrames.ts"

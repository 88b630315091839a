/**
 * A thread's stored events from a seq on, for one run's AG-UI stream: the
 * delivery guarantee of src/gateway/Feeds.ts for a single reader. It
 * subscribes to the live events first, then reads the log from the seq it
 * was given, then takes live events, dropping those the log covered and
 * reading the log again whenever a seq jumps (events published out of order
 * by different writers), the broker says it may have lost messages, or
 * nothing came for a while: no gap, no duplicate. It ends after the run's
 * terminal event, or after a `members_changed` removing the reader.
 */
import { Chunk, Duration, Effect, Option, Queue, Stream } from "effect"
import type { DatabaseError } from "../domain/Errors.ts"
import type { BrokerMessage } from "../eventlog/Broker.ts"
import type { EventLog } from "../eventlog/EventLog.ts"
import type { StoredEvent } from "../protocol/Events.ts"

const PAGE = 500
/** Without a live event for this long, the log is read again: a lost broker must not stall the stream. */
const POLL = Duration.seconds(5)

const isTerminal = (event: StoredEvent, runId: string) =>
  event.run_id === runId && (event.event_type === "agent_completed" || event.event_type === "agent_error")

const removes = (event: StoredEvent, userId: string) =>
  event.event_type === "members_changed" &&
  ((event.data as { readonly removed?: ReadonlyArray<string> }).removed ?? []).includes(userId)

/** The stored event a live message carries: its envelope, as stored. */
const decode = (message: BrokerMessage): StoredEvent => {
  const { type: _type, ...event } = JSON.parse(message.payload) as StoredEvent & { readonly type: string }
  return event
}

export const runFeed = (eventLog: typeof EventLog.Service, input: {
  readonly threadId: string
  readonly runId: string
  readonly userId: string
  /** The events after this seq. */
  readonly afterSeq: number
}) =>
  Stream.unwrapScoped(Effect.gen(function*() {
    // Subscribed before the first read: whatever is committed after it arrives here.
    const live = yield* eventLog.live
    let lastSeq = input.afterSeq
    let done = false
    let fromLog = true

    /**
     * Takes events in seq order from `lastSeq + 1`, up to the end of the run. A live event past a gap
     * sends the next pull to the log; a seq missing from the log itself cannot be waited for, and is
     * skipped, as Feeds does.
     */
    const accept = (events: Iterable<StoredEvent>, fromTheLog: boolean) => {
      const out: Array<StoredEvent> = []
      for (const event of events) {
        if (done) break
        if (event.seq <= lastSeq) continue
        if (event.seq !== lastSeq + 1 && !fromTheLog) {
          fromLog = true
          break
        }
        out.push(event)
        lastSeq = event.seq
        if (isTerminal(event, input.runId) || removes(event, input.userId)) done = true
      }
      return out
    }

    const readLog = Effect.map(eventLog.read(input.threadId, lastSeq, PAGE), (events) => {
      fromLog = events.length === PAGE
      return accept(events, true)
    })

    const takeLive = Queue.takeBetween(live, 1, 4096).pipe(
      Effect.timeout(POLL),
      Effect.map((messages) => {
        const mine: Array<StoredEvent> = []
        for (const message of messages) {
          if (message.resync === true) fromLog = true
          else if (message.threadId === input.threadId && message.payload !== "") mine.push(decode(message))
        }
        return accept(mine.sort((a, b) => a.seq - b.seq), false)
      }),
      Effect.catchTag("TimeoutException", () => Effect.sync(() => (fromLog = true, [])))
    )

    const pull: Effect.Effect<Chunk.Chunk<StoredEvent>, Option.Option<DatabaseError>> = Effect.suspend(() =>
      done
        ? Effect.fail(Option.none())
        : Effect.mapBoth(fromLog ? readLog : takeLive, { onFailure: Option.some, onSuccess: Chunk.fromIterable })
    )

    return Stream.repeatEffectChunkOption(pull)
  }))

/**
 * Isolation over a randomised multi-user, multi-thread run. Users belong
 * to random subsets of threads; each holds two connections that join,
 * leave and send at random, to their own threads and to others'. No event
 * may reach a user who is not a member of its thread (nor a connection
 * outside the span from its join ack to its leave ack); a non-member's
 * join, send and history read are refused as `not_found` / 404, a member's
 * are accepted. Every stored log, and every stretch of consecutive seqs a
 * connection received, passes the run checker.
 */
import type { EventFrame } from "../../test/utils/ChatClient.ts"
import { RequestFailed } from "../../test/utils/ChatClient.ts"
import type { StressClient } from "./client.ts"
import { type Budget, errorMessage, type Invariant, invariant, waitUntil } from "./common.ts"
import { Random } from "./random.ts"
import { pacedModel, startServer } from "./server.ts"
import { RunCheck, storedLog } from "./tracks.ts"

export interface IsolationConfig {
  readonly seed: number
  readonly users: number
  readonly threads: number
  /** Join, leave, send and read actions, over all connections. */
  readonly actions: number
}

const CONNECTIONS_PER_USER = 2

export const isolationScenario = async (config: IsolationConfig, budget: Budget): Promise<Array<Invariant>> => {
  const random = new Random(config.seed, "isolation")
  const server = await startServer({ model: pacedModel(4, 5) })
  const counts = {
    users: config.users,
    threads: config.threads,
    connections: 0,
    actions: 0,
    events_delivered: 0,
    events_to_non_members: 0,
    events_outside_join: 0,
    non_member_requests: 0,
    non_member_refused: 0,
    non_member_accepted: 0,
    member_requests: 0,
    member_refused: 0,
    busy: 0,
    server_errors_logged: 0
  }
  const problems: Array<string> = []
  const note = (problem: string) => problems.length < 5 && problems.push(problem)
  const users = Array.from({ length: config.users }, (_, i) => `iso-${i}`)
  const members = new Map<string, Set<string>>()
  const stored = new RunCheck()
  const streams = new RunCheck()
  try {
    for (let t = 0; t < config.threads; t++) {
      const chosen = random.sample(users, random.int(1, Math.ceil(config.users / 2)))
      const creator = await server.connect(chosen[0]!)
      const { thread_id } = await creator.request({ type: "create_thread", members: chosen.slice(1) })
      creator.close()
      members.set(thread_id as string, new Set(chosen))
    }
    const threadIds = [...members.keys()]

    const actor = async (user: string, index: number, quota: number) => {
      const rng = random.fork(`${user}-${index}`)
      const own = threadIds.filter((id) => members.get(id)!.has(user))
      const client: StressClient = await server.connect(user)
      counts.connections++
      const joined = new Set<string>()
      const leaving = new Set<string>()
      /** Threads of the request in flight: a send joins before it answers, so its thread's events may come first. */
      const asking = new Set<string>()
      const log: Array<string> = []
      const received = new Map<string, Array<EventFrame>>()
      client.onEvent = (event: EventFrame) => {
        counts.events_delivered++
        const events = received.get(event.thread_id)
        if (events === undefined) received.set(event.thread_id, [event])
        else events.push(event)
        if (!members.get(event.thread_id)?.has(user)) {
          counts.events_to_non_members++
          note(`${user} got ${event.event_type} of ${event.thread_id}`)
        }
        if (!joined.has(event.thread_id) && !leaving.has(event.thread_id) && !asking.has(event.thread_id)) {
          counts.events_outside_join++
          note(
            `${user}/${index} got ${event.event_type} ${event.seq} of ${event.thread_id} outside a join; ${
              log.slice(-6).join(", ")
            }`
          )
        }
      }
      /** Sends a request and checks it was refused exactly when the user is not a member. */
      const attempt = async (threadId: string, frame: Record<string, unknown>, onAck?: () => void) => {
        const member = members.get(threadId)!.has(user)
        log.push(`${String(frame.type)} ${threadId.slice(0, 6)}`)
        if (member) counts.member_requests++
        else counts.non_member_requests++
        asking.add(threadId)
        try {
          await client.request({ ...frame, thread_id: threadId }, budget.timeout(20_000), onAck)
          log.push("ack")
          if (!member) counts.non_member_accepted++
        } catch (error) {
          if (error instanceof RequestFailed && error.code === "busy" && member) {
            // Refused because a run is active, but the send had joined the connection to the thread first.
            joined.add(threadId)
            return void counts.busy++
          }
          if (error instanceof RequestFailed && error.code === "not_found" && !member) {
            return void counts.non_member_refused++
          }
          if (member) counts.member_refused++
          note(`${user} ${String(frame.type)} ${threadId}: ${errorMessage(error)}`)
        } finally {
          asking.delete(threadId)
        }
      }
      for (let i = 0; i < quota; i++) {
        budget.check("isolation actions")
        counts.actions++
        // Mostly its own threads, so members see traffic; the rest anywhere.
        const threadId = own.length > 0 && rng.chance(0.6) ? rng.pick(own) : rng.pick(threadIds)
        const roll = rng.next()
        if (roll < 0.35) {
          const afterSeq = rng.chance(0.5) ? { after_seq: rng.int(0, 20) } : {}
          await attempt(threadId, { type: "join_thread", ...afterSeq }, () => joined.add(threadId))
        } else if (roll < 0.5 && joined.size > 0) {
          const target = rng.pick([...joined])
          joined.delete(target)
          leaving.add(target)
          await attempt(target, { type: "leave_thread" }, () => leaving.delete(target))
        } else if (roll < 0.9) {
          // A member's send joins the thread; the ack comes before the run's first event.
          await attempt(threadId, { type: "send_message", content: `m${i}` }, () => joined.add(threadId))
        } else {
          const response = await server.fetchAs(user, `/api/threads/${threadId}/events`)
          const member = members.get(threadId)!.has(user)
          if (member) counts.member_requests++
          else counts.non_member_requests++
          if (member !== (response.status === 200)) {
            if (member) counts.member_refused++
            else counts.non_member_accepted++
            note(`${user} read ${threadId}: ${response.status}`)
          } else if (!member) {
            counts.non_member_refused++
          }
          await response.body?.cancel()
        }
      }
      return { client, received, label: `${user}/${index}` }
    }

    const perConnection = Math.ceil(config.actions / (config.users * CONNECTIONS_PER_USER))
    const actors = await Promise.all(
      users.flatMap((user) => Array.from({ length: CONNECTIONS_PER_USER }, (_, i) => actor(user, i, perConnection)))
    )
    // Let the runs finish while their members watch, then go.
    await waitUntil(budget, 30_000, async () => (await server.activeRuns()) === 0)
    for (const { client } of actors) client.close()
    for (const [threadId, users] of members) {
      const log = await storedLog((path) => server.fetchAs([...users][0]!, path), threadId)
      stored.check(`stored ${threadId}`, log, { ended: true })
    }
    // A connection's stream of a thread is a selection (joins with any after_seq, leaves, rejoins): each
    // stretch of consecutive seqs is a late join's stream, judged from its first seq.
    for (const { received, label } of actors) {
      for (const [threadId, events] of received) {
        for (const span of stretches(events)) {
          streams.check(`${label} in ${threadId}`, span, { partial: true, firstSeq: span[0]!.seq })
        }
      }
    }
  } catch (error) {
    note(`scenario failed: ${errorMessage(error)}`)
  } finally {
    await server.closeReporting(counts, problems)
  }
  return [
    invariant(
      "isolation: 0 events to non-members (or outside a connection's joins); non-members refused, members served",
      counts.actions >= config.actions && counts.events_delivered > 0 && counts.non_member_refused > 0 &&
        counts.events_to_non_members + counts.events_outside_join + counts.non_member_accepted +
              counts.member_refused + counts.server_errors_logged === 0 &&
        problems.length === 0,
      counts,
      problems.join("; ")
    ),
    invariant(
      "isolation: every stored log and every stretch of a connection's stream pass the run checker",
      stored.logs === config.threads && stored.runs > 0 && stored.violations + streams.violations === 0,
      {
        stored_logs: stored.logs,
        stored_runs: stored.runs,
        stretches: streams.logs,
        stretch_runs: streams.runs,
        violations: stored.violations + streams.violations
      },
      [...stored.first, ...streams.first].join("; ")
    )
  ]
}

/** Splits a stream where a seq does not follow the one before. */
const stretches = (events: ReadonlyArray<EventFrame>): Array<Array<EventFrame>> => {
  const spans: Array<Array<EventFrame>> = []
  for (const event of events) {
    const span = spans.at(-1)
    if (span !== undefined && event.seq === span.at(-1)!.seq + 1) span.push(event)
    else spans.push([event])
  }
  return spans
}

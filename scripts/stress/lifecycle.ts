/**
 * kill -9 during runs with tool calls. A server process (lifecycle-server.ts)
 * runs on a database that survives it; owners keep a run going in each of
 * their threads, one at a time (a second message meanwhile must get
 * `busy`), and a watcher joins late. While runs are mid-tool the process
 * is killed with SIGKILL, and started again on the same database, a few
 * times. Then every stored log must pass the run checker, every run a kill
 * left going must have been ended by the next process (`agent_error`
 * `internal`, each open tool call closed "interrupted"), and each client's
 * stream, across its reconnects with `after_seq`, must be its threads'
 * stored log without a gap or a duplicate.
 */
import { Effect } from "effect"
import { testToken } from "../../layers/Test.ts"
import type { EventFrame } from "../../test/utils/ChatClient.ts"
import { RequestFailed } from "../../test/utils/ChatClient.ts"
import { ConnectionLost, StressClient } from "./client.ts"
import { type Budget, type Invariant, sleep, waitUntil } from "./common.ts"
import type { Kill } from "./lifecycle-check.ts"
import { Epoch, follow, Member, newThread, RunEnds, type ThreadState } from "./lifecycle-clients.ts"
import { emptyLogs, killAll, lifecycleDatabase, type ServerProcess, startProcess } from "./lifecycle-process.ts"
import { report } from "./lifecycle-report.ts"
import { Random } from "./random.ts"
import { isTerminal, storedLog } from "./tracks.ts"

const signed = (userId: string) => Effect.runPromise(testToken(userId))

export interface LifecycleConfig {
  readonly seed: number
  readonly threads: number
  readonly owners: number
  readonly kills: number
  /** Runs going at the kills, in all, that a run of the scenario must reach. */
  readonly minInFlight: number
}

/** A fresh embedded database takes tens of seconds to create on a loaded machine. */
const START_MS = 120_000
/** A run may have to wait for a restart, and then for its lease to expire, to end. */
const RUN_END_MS = START_MS + 60_000

export const lifecycleScenario = async (config: LifecycleConfig, budget: Budget): Promise<Array<Invariant>> => {
  const database = await lifecycleDatabase()
  try {
    return await run(config, budget, database.env, database.kind)
  } finally {
    await killAll()
    await database.remove().catch(() => undefined)
  }
}

const fetchAs = async (server: ServerProcess, user: string, path: string) =>
  fetch(`${server.httpUrl}${path}`, { headers: { authorization: `Bearer ${await signed(user)}` } })

/** Whether every run of a log has its terminal event. */
const atRest = (log: ReadonlyArray<EventFrame>) => {
  const going = new Set<string>()
  for (const e of log) {
    if (e.event_type === "agent_started") going.add(e.run_id!)
    else if (isTerminal(e)) going.delete(e.run_id!)
  }
  return going.size === 0
}

const run = async (config: LifecycleConfig, budget: Budget, env: Record<string, string>, kind: string) => {
  const began = Date.now()
  const random = new Random(config.seed, "lifecycle")
  const logs = emptyLogs()
  const starts: Array<number> = []
  const start = async () => {
    const t = Date.now()
    const server = await startProcess({ ...env, LIFECYCLE_SEED: String(config.seed) }, logs, budget.timeout(START_MS))
    starts.push(Date.now() - t)
    return server
  }
  const epoch = new Epoch()
  let server = await start()
  epoch.up(server)

  const counts = { sent: 0, busy_probes: 0, probes_busy: 0, probes_accepted: 0, probes_lost: 0, busy_on_send: 0 }
  const ends = new RunEnds()
  const byId = new Map<string, ThreadState>()
  const ownerEvent = (event: EventFrame, fresh: boolean) => {
    const thread = byId.get(event.thread_id)
    if (fresh && thread !== undefined) follow(thread, event, ends)
  }
  const owners = Array.from(
    { length: config.owners },
    (_, i) => new Member(`owner-${i}`, epoch, budget, true, ownerEvent)
  )
  const watcher = new Member("watcher", epoch, budget, false, () => undefined)
  const threads: Array<ThreadState> = []
  for (const [o, owner] of owners.entries()) {
    const setup = await StressClient.connect(server.wsUrl, await signed(owner.user))
    for (let index = o; index < config.threads; index += config.owners) {
      const create = { type: "create_thread", title: `lifecycle ${index}`, members: [watcher.user] }
      const { thread_id } = await setup.request(create)
      const thread = newThread(thread_id as string, index, owner)
      threads.push(thread)
      byId.set(thread.id, thread)
    }
    setup.close()
    owner.threads = threads.filter((t) => t.owner === owner)
  }
  await Promise.all(owners.map((owner) => owner.ready()))

  const untilEnded = (runId: string) => ends.until(runId, budget.timeout(RUN_END_MS))
  const lost = (error: unknown, client: StressClient) => error instanceof ConnectionLost || !client.open
  const isBusy = (error: unknown) => error instanceof RequestFailed && error.code === "busy"

  /** A second message to a thread whose run is going: refused `busy`, unless the run ended meanwhile. */
  const probe = async (client: StressClient, thread: ThreadState) => {
    counts.busy_probes++
    try {
      await client.request({ type: "send_message", thread_id: thread.id, content: "meanwhile" }, budget.timeout(30_000))
      counts.probes_accepted++
    } catch (error) {
      if (isBusy(error)) counts.probes_busy++
      else if (lost(error, client)) counts.probes_lost++
      else throw error
    }
  }

  let stopping = false
  const drive = async (thread: ThreadState, rng: Random) => {
    for (let sent = 0; !stopping;) {
      budget.check("driving runs")
      const client = await thread.owner.ready()
      // A run going (perhaps left by a kill, and ended by the next process once its lease expires).
      if (thread.open !== undefined) {
        await untilEnded(thread.open)
        continue
      }
      let runId: string
      try {
        const content = `run ${thread.index}.${++sent}`
        runId = (await client.request({ type: "send_message", thread_id: thread.id, content }, budget.timeout(30_000)))
          .run_id as string
      } catch (error) {
        if (lost(error, client)) continue
        if (!isBusy(error)) throw error
        // A run the owner has not seen yet, its events on their way.
        counts.busy_on_send++
        await sleep(50)
        continue
      }
      counts.sent++
      if (!ends.ended.has(runId)) thread.open = runId
      if (sent === 1 || rng.chance(0.2)) await probe(client, thread)
      await untilEnded(runId)
    }
  }
  const drivers = Promise.all(threads.map((t) => drive(t, random.fork(`thread-${t.index}`))))
  drivers.catch(() => undefined)

  const kills: Array<Kill> = []
  const rng = random.fork("kills")
  const racing = (task: () => Promise<unknown>) => Promise.race([task(), drivers])
  // The watcher joins while runs are going, with no after_seq: its streams start mid-thread.
  await sleep(rng.int(100, 400))
  watcher.threads = threads
  await racing(() => watcher.ready())
  for (let k = 0; k < config.kills; k++) {
    budget.check(`before kill ${k + 1}`)
    // Most of a run's time goes to storing its events, so only some runs are in a tool at any moment.
    const want = Math.max(1, Math.round(threads.length * 0.15))
    const midTool = () => threads.filter((t) => t.openTools.size > 0).length
    // The jitter may outlast every open tool call on a loaded machine: then wait for the next ones.
    do {
      await racing(() => waitUntil(budget, 15_000, () => midTool() >= want))
      await sleep(rng.int(0, 100))
    } while (midTool() === 0)
    const going = threads.flatMap((t) => t.open === undefined ? [] : [t])
    const openTools = new Map(going.map((t) => [t.open!, new Set(t.openTools)] as const))
    epoch.down()
    const at = Date.now()
    await server.kill()
    kills.push({ at, inFlight: new Set(openTools.keys()), openTools })
    server = await start()
    epoch.up(server)
    await racing(() => Promise.all([...owners, watcher].map((member) => member.ready())))
  }
  // On the last server, every thread completes a run started there: none is left busy by a dead run.
  for (const t of threads) {
    t.mark = t.owner.tracks.get(t.id)!.last
    t.completedAfterMark = 0
  }
  await racing(() => waitUntil(budget, 60_000, () => threads.every((t) => t.completedAfterMark > 0)))
  stopping = true
  await drivers

  const live = server
  const read = () => Promise.all(threads.map((t) => storedLog((path) => fetchAs(live, t.owner.user, path), t.id)))
  let stored = await read()
  await waitUntil(budget, 30_000, async () => (stored = await read()).every(atRest), 200)
  const members = [...owners, watcher]
  const heads = new Map(threads.map((t, i) => [t.id, stored[i]!.at(-1)?.seq ?? 0]))
  await waitUntil(
    budget,
    20_000,
    () => members.every((m) => [...m.tracks].every(([id, t]) => t.last >= heads.get(id)!))
  )
  const metrics = await (await fetchAs(live, "watcher", "/metrics")).text()
  const activeAtEnd = Number(/^agentchat_runs_active (\S+)$/m.exec(metrics)?.[1] ?? Number.NaN)
  return report({
    config,
    kind,
    threads,
    stored,
    members,
    kills,
    logs,
    counts,
    starts,
    activeAtEnd,
    freeAfterRestart: threads.filter((t) => t.completedAfterMark > 0).length,
    seconds: (Date.now() - began) / 1000
  })
}

/**
 * A sender whose socket closes as soon as its send_message is acknowledged
 * (a page closed, a script that fires and forgets): the run it started goes
 * on without it and ends, and its thread takes the next message. The ack is
 * sent once the message and its run are committed, before their events are
 * published; on a broker over the network (Redis, pg_notify) that publish
 * takes long enough for the close to land and interrupt the request. Here
 * the broker takes 50 ms to publish, so it always does.
 */
import { expect, it } from "@effect/vitest"
import { Context, Effect, Layer } from "effect"
import { Broker, BrokerInProcess } from "../../src/eventlog/Broker.ts"
import { delta, scriptedModel } from "../utils/Models.ts"
import { TestServer } from "../utils/TestServer.ts"

/** The in-process broker, as slow to publish as one across a network. */
const SlowBroker = Layer.effect(
  Broker,
  Effect.map(
    Broker,
    (broker) =>
      Broker.of({
        ...broker,
        publish: (messages) => Effect.zipRight(Effect.sleep("50 millis"), broker.publish(messages))
      })
  )
).pipe(Layer.provide(BrokerInProcess))

it.scopedLive("a run whose sender left at the ack starts, ends, and frees its thread", () =>
  Effect.gen(function*() {
    const server = Context.get(
      yield* Layer.build(TestServer.layer({ model: scriptedModel(() => [delta("answered")]), broker: SlowBroker })),
      TestServer
    )
    const watcher = yield* Effect.promise(() => server.connect("alice"))
    for (let i = 0; i < 3; i++) {
      const sender = yield* Effect.promise(() => server.connect("alice"))
      const { thread_id } = yield* Effect.promise(() => sender.request({ type: "create_thread" }))
      yield* Effect.promise(() => watcher.request({ type: "join_thread", thread_id }))
      const sent = yield* Effect.promise(() => sender.request({ type: "send_message", thread_id, content: "go" }))
      sender.ws.terminate()
      expect((yield* Effect.promise(() => watcher.waitRunEnd(sent.run_id, 5_000))).event_type).toBe("agent_completed")
      const next = yield* Effect.promise(() => watcher.request({ type: "send_message", thread_id, content: "again" }))
      expect((yield* Effect.promise(() => watcher.waitRunEnd(next.run_id, 5_000))).event_type).toBe("agent_completed")
    }
  }))

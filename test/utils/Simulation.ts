/**
 * A discrete-event simulation of an Effect program: every fiber runs on one
 * scheduler and one virtual clock, and the loop below alternates "run every
 * fiber until all of them wait" and "move the clock to the next timer".
 *
 * Why not the TestClock: to advance, it polls with real `setTimeout(0)`s
 * until every fiber is suspended, about 4 ms per timer it fires, and the
 * lifecycle property fires hundreds of timers per case (lease renewals,
 * sweeps, retries, timeouts), so a few hundred cases would take minutes.
 * Here the whole case runs synchronously, in order, and the same scenario
 * always runs the same way, which fast-check's shrinking relies on.
 */
import { Clock, Duration, Effect, type Exit, Random, Scheduler } from "effect"

interface Timer {
  readonly at: number
  readonly order: number
  readonly wake: () => void
}

class VirtualClock implements Clock.Clock {
  readonly [Clock.ClockTypeId]: Clock.ClockTypeId = Clock.ClockTypeId
  now = 0
  private order = 0
  private timers: Array<Timer> = []

  unsafeCurrentTimeMillis() {
    return this.now
  }
  unsafeCurrentTimeNanos() {
    return BigInt(this.now) * 1_000_000n
  }
  readonly currentTimeMillis = Effect.sync(() => this.now)
  readonly currentTimeNanos = Effect.sync(() => this.unsafeCurrentTimeNanos())

  sleep(duration: Duration.DurationInput): Effect.Effect<void> {
    return Effect.async<void>((resume) => {
      const timer: Timer = {
        // Whole milliseconds, as the real clock counts (jittered schedules ask for fractions).
        at: this.now + Math.ceil(Duration.toMillis(Duration.decode(duration))),
        order: this.order++,
        wake: () => resume(Effect.void)
      }
      this.timers.push(timer)
      // An interrupted sleep (a timeout that lost its race) leaves no timer behind to fire for nothing.
      return Effect.sync(() => {
        this.timers = this.timers.filter((t) => t !== timer)
      })
    })
  }

  /** The earliest timer (the first set among equals), removed. */
  next(): Timer | undefined {
    if (this.timers.length === 0) return undefined
    let best = 0
    for (let i = 1; i < this.timers.length; i++) {
      const t = this.timers[i]!
      const b = this.timers[best]!
      if (t.at < b.at || (t.at === b.at && t.order < b.order)) best = i
    }
    return this.timers.splice(best, 1)[0]
  }
}

export interface SimulationLimits {
  /** Virtual milliseconds after which the program is deemed hung. */
  readonly horizon: number
  /** Scheduler steps after which the program is deemed to spin. */
  readonly steps: number
}

/** Thrown when the program cannot finish: the simulation's own verdict, part of the property. */
export class SimulationStuck extends Error {}

/**
 * Runs `effect` to its exit, synchronously. `seed` fixes the random numbers (schedule jitter), so the
 * run depends on nothing but its inputs.
 */
export const simulate = <A, E>(
  effect: Effect.Effect<A, E>,
  seed: number,
  limits: SimulationLimits
): Exit.Exit<A, E> => {
  const clock = new VirtualClock()
  const scheduler = new Scheduler.ControlledScheduler()
  const fiber = Effect.runFork(
    effect.pipe(Effect.withClock(clock), Effect.withRandom(Random.make(seed))),
    { scheduler }
  )
  let steps = 0
  for (;;) {
    while (scheduler.tasks.buckets.length > 0) {
      scheduler.step()
      if (++steps > limits.steps) throw new SimulationStuck(`still busy after ${limits.steps} scheduler steps`)
    }
    const exit = fiber.unsafePoll()
    if (exit !== null) return exit
    const timer = clock.next()
    if (timer === undefined) {
      throw new SimulationStuck(`deadlock at ${clock.now} ms: every fiber waits, no timer is set`)
    }
    if (timer.at > limits.horizon) throw new SimulationStuck(`not finished after ${limits.horizon} virtual ms`)
    clock.now = Math.max(clock.now, timer.at)
    timer.wake()
  }
}

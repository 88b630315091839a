/** Listeners, and async iterables over them that buffer what they have not yet been asked for. */

export type Listener<A> = (value: A) => void

export class Listeners<A> {
  private readonly set = new Set<Listener<A>>()
  private readonly ends = new Set<() => void>()

  add(listener: Listener<A>): () => void {
    this.set.add(listener)
    return () => void this.set.delete(listener)
  }

  emit(value: A) {
    for (const listener of [...this.set]) {
      try {
        listener(value)
      } catch {
        // A listener's failure is its own; the others still hear.
      }
    }
  }

  /** No more values: every iterator ends. */
  end() {
    for (const end of [...this.ends]) end()
  }

  /** Every value emitted from now on, until `end()` or the iterator's `return()`. */
  iterate(): AsyncIterableIterator<A> {
    const queue: Array<A> = []
    let wake: (() => void) | undefined
    let ended = false
    const stop = () => {
      ended = true
      off()
      this.ends.delete(stop)
      wake?.()
    }
    const off = this.add((value) => {
      queue.push(value)
      wake?.()
    })
    this.ends.add(stop)
    const iterator: AsyncIterableIterator<A> = {
      [Symbol.asyncIterator]: () => iterator,
      next: async () => {
        while (queue.length === 0 && !ended) await new Promise<void>((resolve) => wake = resolve)
        wake = undefined
        if (queue.length > 0) return { done: false, value: queue.shift()! }
        return { done: true, value: undefined }
      },
      return: async () => {
        stop()
        queue.length = 0
        return { done: true, value: undefined }
      }
    }
    return iterator
  }
}

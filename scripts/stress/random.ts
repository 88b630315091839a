/**
 * A seeded PRNG (sfc32), so a stress run's choices repeat for the same
 * seed. Each actor forks its own stream by label: what one client decides
 * then does not depend on how the event loop interleaved the others.
 */

/** FNV-1a, to turn a seed and a label into 32-bit state. */
const hash = (text: string) => {
  let h = 0x811c9dc5
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i)
    h = Math.imul(h, 0x01000193)
  }
  return h >>> 0
}

export class Random {
  private a: number
  private b: number
  private c: number
  private d: number

  constructor(readonly seed: number, readonly label = "") {
    this.a = hash(`a:${seed}:${label}`)
    this.b = hash(`b:${seed}:${label}`)
    this.c = hash(`c:${seed}:${label}`)
    this.d = 1
    // The first outputs of sfc32 are correlated with the state; discard them.
    for (let i = 0; i < 15; i++) this.uint32()
  }

  /** An independent stream for one actor. */
  fork(label: string) {
    return new Random(this.seed, `${this.label}/${label}`)
  }

  uint32() {
    this.a >>>= 0
    this.b >>>= 0
    this.c >>>= 0
    this.d >>>= 0
    const t = (this.a + this.b | 0) + this.d | 0
    this.d = this.d + 1 | 0
    this.a = this.b ^ this.b >>> 9
    this.b = this.c + (this.c << 3) | 0
    this.c = this.c << 21 | this.c >>> 11
    this.c = this.c + t | 0
    return t >>> 0
  }

  /** In [0, 1). */
  next() {
    return this.uint32() / 4294967296
  }

  /** An integer in [min, max]. */
  int(min: number, max: number) {
    return min + Math.floor(this.next() * (max - min + 1))
  }

  chance(p: number) {
    return this.next() < p
  }

  pick<A>(items: ReadonlyArray<A>): A {
    if (items.length === 0) throw new Error("pick from an empty list")
    return items[this.int(0, items.length - 1)]!
  }

  /** `count` distinct items, in random order. */
  sample<A>(items: ReadonlyArray<A>, count: number): Array<A> {
    const copy = [...items]
    for (let i = copy.length - 1; i > 0; i--) {
      const j = this.int(0, i)
      ;[copy[i], copy[j]] = [copy[j]!, copy[i]!]
    }
    return copy.slice(0, Math.min(count, copy.length))
  }

  /** Characters drawn from `alphabet`. */
  string(length: number, alphabet: string) {
    let text = ""
    for (let i = 0; i < length; i++) text += alphabet[this.int(0, alphabet.length - 1)]
    return text
  }

  bytes(length: number) {
    const buffer = Buffer.allocUnsafe(length)
    for (let i = 0; i < length; i++) buffer[i] = this.uint32() & 0xff
    return buffer
  }
}

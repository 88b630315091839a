/** Polls until a check holds, or fails naming what it waited for: tests wait for states, never sleep on guesses. */

/**
 * Resolves with the first answer of `check` that is neither `undefined` nor `false` (so a boolean check
 * waits for `true`), polling every `everyMs`; rejects after `timeoutMs`.
 */
export const until = async <A>(
  check: () => Promise<A | undefined | false>,
  what: string,
  timeoutMs = 10_000,
  everyMs = 20
): Promise<A> => {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const found = await check()
    if (found !== undefined && found !== false) return found
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, everyMs))
  }
}

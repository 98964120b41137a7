// The one retry delay of the simulator: exponential from `baseMs`, capped at
// `maxMs`, with jitter. Every virtual device that loses or cannot reach its
// broker waits through it, so a fleet that lost its broker does not come
// back as one thundering herd (issue "Fit the ecosystem": one helper instead
// of a formula written by hand in each load generator).
//
// backoffDelay() has the signature of broker/backoff.ts (the simulator may
// not import broker/): 'full' jitter is uniform in [0, cap) — AWS's
// "exponential backoff and jitter", the fewest collisions for a crowd of
// clients —, 'equal' uniform in [cap/2, cap). createBackoff() adds what a
// device needs on top: the count of consecutive failures, and giving up.

export type Jitter = 'full' | 'equal'

export interface BackoffOptions { baseMs: number, maxMs: number, jitter: Jitter }

/** The delay before retry `attempt` (0 after the first failure). */
export function backoffDelay (attempt: number, opts: BackoffOptions, random: () => number = Math.random): number {
  // 2^20 × base is far past any cap; the bound keeps the number finite.
  const cap = Math.min(opts.maxMs, opts.baseMs * 2 ** Math.min(Math.max(attempt, 0), 20))
  return opts.jitter === 'full' ? random() * cap : cap / 2 + random() * cap / 2
}

export interface BackoffPolicy extends BackoffOptions {
  /** Retries after consecutive failures before giving up; for ever when absent. */
  retries?: number
}

/** Consecutive failures of one thing (a device's connection): how long to wait before the next try. */
export interface Backoff {
  /** The delay before the next retry, or undefined when the retries are spent. */
  next (): number | undefined
  /** A success: the next failure starts from `baseMs` again. */
  reset (): void
}

export function createBackoff (policy: BackoffPolicy, random: () => number = Math.random): Backoff {
  let attempt = 0
  return {
    next () {
      if (attempt >= (policy.retries ?? Infinity)) return undefined
      return backoffDelay(attempt++, policy, random)
    },
    reset () { attempt = 0 }
  }
}

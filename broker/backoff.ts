// The one retry delay of the project: exponential from `baseMs`, capped at
// `maxMs`, with jitter so that many retriers that failed together (writers,
// replicas, a fleet of virtual devices that lost its broker) do not retry
// together. 'full' (uniform in [0, cap]) spreads the most — AWS's
// "exponential backoff and jitter" — for the batch writer and a crowd of
// devices; 'equal' (uniform in [cap/2, cap]) keeps a floor, for a reconnect
// loop that should not hammer a server that is still starting.
//
// A pure function with no broker state: the simulator's virtual devices and
// the command-line tools use it too, so that there is one formula to read
// and test (test/broker/backoff.test.ts).
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

/** Consecutive failures of one thing (a connection): how long to wait before the next try. */
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

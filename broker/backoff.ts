// The broker's one retry delay: exponential from `baseMs`, capped at
// `maxMs`, with jitter so that many retriers (writers, replicas) that failed
// together do not retry together. 'full' (uniform in [0, cap]) spreads the
// most — AWS's "exponential backoff and jitter" — for the batch writer;
// 'equal' (uniform in [cap/2, cap]) keeps a floor, for a reconnect loop that
// should not hammer a server that is still starting.
export type Jitter = 'full' | 'equal'

export function backoffDelay (attempt: number, opts: { baseMs: number, maxMs: number, jitter: Jitter }, random: () => number = Math.random): number {
  // 2^20 × base is far past any cap; the bound keeps the number finite.
  const cap = Math.min(opts.maxMs, opts.baseMs * 2 ** Math.min(Math.max(attempt, 0), 20))
  return opts.jitter === 'full' ? random() * cap : cap / 2 + random() * cap / 2
}

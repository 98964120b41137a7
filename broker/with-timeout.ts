/**
 * Waits for `p` at most `ms`: resolves with its value, or with undefined
 * once the time is up (p goes on; its rejection is not reported here).
 * Shutdown steps use it so that a peer that is gone (PostgreSQL, Redis)
 * cannot hold the process.
 */
export function withTimeout<T> (p: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined
  return Promise.race([p, new Promise<undefined>((resolve) => { timer = setTimeout(() => resolve(undefined), ms) })]).finally(() => clearTimeout(timer))
}

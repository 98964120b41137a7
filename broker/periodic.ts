// One helper for the broker's background loops (presence flushes, replica
// heartbeats, retention, command expiry, Redis watch): run a task every
// `intervalMs`, never two runs at once (a tick that finds the previous run
// still going is skipped), and close() stops the timer and waits for the run
// in flight, so shutdown never races a half-written batch. A run can also be
// asked for at once (runNow); it joins the run in flight if there is one.
import type { Logger } from './logger.js'

export interface Periodic<T> {
  /** Runs the task now, or joins the run in flight. */
  runNow (): Promise<T>
  /** Stops the timer; resolves when the run in flight (if any) has ended. */
  close (): Promise<void>
}

export interface PeriodicOptions {
  intervalMs: number
  /** Logged at warn when a scheduled run fails (the next tick tries again). */
  onError (err: Error): void
  /** Keep the process alive for this timer (default: no). */
  ref?: boolean
}

export function every<T> (task: () => Promise<T>, opts: PeriodicOptions): Periodic<T> {
  let current: Promise<T> | undefined
  let closed = false
  const runNow = (): Promise<T> => {
    current ??= task().finally(() => { current = undefined })
    return current
  }
  const timer = setInterval(() => {
    if (closed || current) return
    runNow().catch((err: Error) => opts.onError(err))
  }, opts.intervalMs)
  if (!opts.ref) timer.unref()
  return {
    runNow,
    async close () {
      closed = true
      clearInterval(timer)
      await current?.catch(() => {})
    }
  }
}

/** An onError that logs at warn with the loop's name. */
export function warnOnError (log: Logger, what: string): (err: Error) => void {
  return (err) => log.warn({ err: { message: err.message, code: (err as { code?: string }).code } }, `${what} failed; will retry`)
}

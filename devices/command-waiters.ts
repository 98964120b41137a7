// Requests held until a command finishes (GET /v1/commands/{id}?waitSeconds=N),
// woken by the NOTIFY that every final transition sends from any replica
// (devices/command-store.ts): no polling loop.
import type { EventEmitter } from 'node:events'
import { CHANNELS, type ChangeFeed } from './dispatch.js'

export interface WaitOptions {
  /** Emits 'close' when the client goes away: nobody is left to answer. */
  gone: EventEmitter
  /** Whether the command is final already (it may have finished between the caller's read and the registration). */
  finished (): Promise<boolean>
}

export interface CommandWaiters {
  /** Resolves when command `id` finishes, after `ms`, or when the client goes away, whichever comes first. */
  wait (id: string, ms: number, opts: WaitOptions): Promise<void>
}

export function createCommandWaiters (changes: ChangeFeed): CommandWaiters {
  const waiters = new Map<string, Set<() => void>>()
  changes.on(CHANNELS.commandDone, (id) => { for (const wake of waiters.get(id) ?? []) wake() })
  return {
    async wait (id, ms, { gone, finished }) {
      await new Promise<void>((resolve) => {
        const set = waiters.get(id) ?? new Set()
        waiters.set(id, set)
        let over = false
        const done = () => {
          // Several wake-ups can race (NOTIFY, timer, close, the check
          // below); only the first one counts, and an emptied set is removed
          // only if it is still this id's set, not a later waiter's.
          if (over) return
          over = true
          clearTimeout(timer)
          set.delete(done)
          if (set.size === 0 && waiters.get(id) === set) waiters.delete(id)
          gone.off('close', done)
          resolve()
        }
        const timer = setTimeout(done, ms)
        set.add(done)
        gone.once('close', done)
        finished().then((yes) => { if (yes) done() }, () => {})
      })
    }
  }
}

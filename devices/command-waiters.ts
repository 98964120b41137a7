// Requests held until a command finishes (GET /v1/commands/{id}?waitSeconds=N),
// with no polling loop. Two ways to be woken (issue 15, target 7):
//   - a result or cancel recorded by this process: finished(command), called
//     after its COMMIT with the committed row, answers at once, without the
//     NOTIFY round trip and without reading the row again;
//   - any other final transition (a result recorded by another replica, an
//     expiry): the NOTIFY every final transition sends
//     (devices/command-store.ts), then one read.
// Either way the answer is only given once the final state is committed: a
// result is durable when the GET answers.
import type { EventEmitter } from 'node:events'
import { FINAL, type Command } from './command-store.js'
import { CHANNELS, type ChangeFeed } from './dispatch.js'

export interface WaitOptions {
  /** Emits 'close' when the client goes away: nobody is left to answer. */
  gone: EventEmitter
  /**
   * Reads the command (undefined: there is no such command). Called once the
   * waiter is registered, so a command that finishes between the read and
   * the registration cannot be missed; again after a NOTIFY and at the deadline.
   */
  read (): Promise<Command | undefined>
}

export interface CommandWaiters {
  /**
   * The command as soon as it is final, else as it is at the deadline
   * (`ms`); undefined when there is no such command (or no longer: its
   * device was deleted). When the client goes away first: the last state read.
   */
  wait (id: string, ms: number, opts: WaitOptions): Promise<Command | undefined>
  /** This process committed `command`'s final state: its waiters answer with it. */
  finished (command: Command): void
}

/** Where this process's own final transitions are announced after COMMIT (the command store). */
export interface LocalFinishes {
  onFinished (listener: (command: Command) => void): void
}

type Wake = (command?: Command) => void

export function createCommandWaiters (changes: ChangeFeed, local?: LocalFinishes): CommandWaiters {
  const waiters = new Map<string, Set<Wake>>()
  changes.on(CHANNELS.commandDone, (id) => { for (const wake of waiters.get(id) ?? []) wake() })
  const finished = (command: Command) => {
    if (!FINAL.has(command.status)) return
    for (const wake of waiters.get(command.id) ?? []) wake(command)
  }
  local?.onFinished(finished)
  return {
    finished,
    wait (id, ms, { gone, read }) {
      return new Promise<Command | undefined>((resolve, reject) => {
        let set = waiters.get(id)
        if (!set) { set = new Set(); waiters.set(id, set) }
        const mine = set
        let over = false
        let latest: Command | undefined
        // Several wake-ups can race (local finish, NOTIFY, deadline, close,
        // the reads); only the first answer counts, and an emptied set is
        // removed only if it is still this id's set, not a later waiter's.
        const finish = (outcome: () => void) => {
          if (over) return
          over = true
          clearTimeout(timer)
          mine.delete(wake)
          if (mine.size === 0 && waiters.get(id) === mine) waiters.delete(id)
          gone.off('close', onGone)
          outcome()
        }
        const answer = (c: Command | undefined) => finish(() => resolve(c))
        const fail = (err: unknown) => finish(() => reject(err))
        const check = () => {
          read().then((c) => {
            if (over) return
            if (c === undefined || FINAL.has(c.status)) answer(c)
            else latest = c
          }, fail)
        }
        const wake: Wake = (command) => { if (command) answer(command); else check() }
        const onGone = () => answer(latest)
        // At the deadline: the state then (a command may have been sent meanwhile).
        const timer = setTimeout(() => { if (!over) read().then(answer, fail) }, ms)
        mine.add(wake)
        gone.once('close', onGone)
        check()
      })
    }
  }
}

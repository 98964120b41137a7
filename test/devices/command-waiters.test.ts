// devices/command-waiters.ts: requests held by GET /v1/commands/{id}?waitSeconds
// wake on the command's NOTIFY, on their deadline, or when the client goes
// away. (The NOTIFY itself, across replicas, is covered by commands.test.ts;
// here the change feed is a plain emitter so that races can be ordered.)
import test from 'ava'
import { EventEmitter } from 'node:events'
import { createCommandWaiters } from '../../devices/command-waiters.js'
import { CHANNELS, type ChangeFeed } from '../../devices/dispatch.js'

function feed () {
  const emitter = new EventEmitter()
  const changes: ChangeFeed = { on: (channel, handler) => { emitter.on(channel, handler) } }
  return { changes, notify: (id: string) => emitter.emit(CHANNELS.commandDone, id) }
}

/** 'woken' if the promise settles within the deadline, else 'still waiting'. */
async function within (p: Promise<void>, ms = 2000): Promise<string> {
  let timer: NodeJS.Timeout | undefined
  const deadline = new Promise<string>((resolve) => { timer = setTimeout(() => resolve('still waiting'), ms) })
  try { return await Promise.race([p.then(() => 'woken'), deadline]) } finally { clearTimeout(timer) }
}

const notYet = async () => false

test('a waiter wakes on its command\'s notification, not on another\'s', async (t) => {
  const { changes, notify } = feed()
  const waiters = createCommandWaiters(changes)
  const waiting = waiters.wait('c1', 60_000, { gone: new EventEmitter(), finished: notYet })
  notify('c2')
  t.is(await within(waiting, 200), 'still waiting')
  notify('c1')
  t.is(await within(waiting), 'woken')
})

test('a waiter wakes when its client goes away, and at its deadline', async (t) => {
  const { changes } = feed()
  const waiters = createCommandWaiters(changes)
  const gone = new EventEmitter()
  const leaving = waiters.wait('c1', 60_000, { gone, finished: notYet })
  gone.emit('close')
  t.is(await within(leaving), 'woken')
  t.is(gone.listenerCount('close'), 0)
  t.is(await within(waiters.wait('c1', 20, { gone: new EventEmitter(), finished: notYet })), 'woken')
})

test('a command that finished before the registration does not wait', async (t) => {
  const { changes } = feed()
  const waiters = createCommandWaiters(changes)
  t.is(await within(waiters.wait('c1', 60_000, { gone: new EventEmitter(), finished: async () => true })), 'woken')
})

test('a late second wake-up of a finished waiter does not unregister a newer waiter of the same command', async (t) => {
  const { changes, notify } = feed()
  const waiters = createCommandWaiters(changes)
  // The first waiter times out while its "finished already?" check is still running…
  let answer!: (yes: boolean) => void
  const slowCheck = new Promise<boolean>((resolve) => { answer = resolve })
  await waiters.wait('c1', 10, { gone: new EventEmitter(), finished: () => slowCheck })
  // …a second request starts waiting for the same command…
  const second = waiters.wait('c1', 60_000, { gone: new EventEmitter(), finished: notYet })
  // …then the first check answers (a second wake-up of the first waiter).
  answer(true)
  await slowCheck
  await new Promise((resolve) => setImmediate(resolve))
  notify('c1')
  t.is(await within(second), 'woken')
})

// devices/command-waiters.ts: requests held by GET /v1/commands/{id}?waitSeconds
// answer when this process records the command's final state (with that
// row, no NOTIFY, no re-read), on the command's NOTIFY (then one read), at
// their deadline (the state then), or when the client goes away. (The NOTIFY
// itself, across replicas, is covered by commands.test.ts; here the change
// feed is a plain emitter so that races can be ordered.)
import test from 'ava'
import { EventEmitter } from 'node:events'
import type { Command, CommandStatus } from '../../devices/command-store.js'
import { createCommandWaiters } from '../../devices/command-waiters.js'
import { CHANNELS, type ChangeFeed } from '../../devices/dispatch.js'

function feed () {
  const emitter = new EventEmitter()
  const changes: ChangeFeed = { on: (channel, handler) => { emitter.on(channel, handler) } }
  return { changes, notify: (id: string) => emitter.emit(CHANNELS.commandDone, id) }
}

const command = (id: string, status: CommandStatus): Command =>
  ({ id, deviceId: 'd1', name: 'ping', params: {}, status, createdAt: new Date(), expiresAt: new Date(Date.now() + 60_000), sentAt: null, completedAt: null, result: null, correlationId: null })

/** A stored command whose status the test moves, counting reads. */
function stored (id: string, status: CommandStatus = 'sent') {
  const s = { status: status as CommandStatus | undefined, reads: 0, read: async () => { s.reads++; return s.status && command(id, s.status) } }
  return s
}

/** The answer if the promise settles within the deadline, else 'still waiting'. */
async function within<T> (p: Promise<T>, ms = 2000): Promise<T | 'still waiting'> {
  let timer: NodeJS.Timeout | undefined
  const deadline = new Promise<'still waiting'>((resolve) => { timer = setTimeout(() => resolve('still waiting'), ms) })
  try { return await Promise.race([p, deadline]) } finally { clearTimeout(timer) }
}

test('a waiter wakes on its command\'s notification, not on another\'s, and answers with what it then reads', async (t) => {
  const { changes, notify } = feed()
  const waiters = createCommandWaiters(changes)
  const c1 = stored('c1')
  const waiting = waiters.wait('c1', 60_000, { gone: new EventEmitter(), read: c1.read })
  notify('c2')
  t.is(await within(waiting, 200), 'still waiting')
  // A NOTIFY whose read still shows it open (a stale wake-up) keeps it waiting.
  notify('c1')
  t.is(await within(waiting, 200), 'still waiting')
  c1.status = 'succeeded'
  notify('c1')
  t.is((await within(waiting) as Command).status, 'succeeded')
})

test('a command finished by this process answers its waiters at once with the committed row, without reading it again', async (t) => {
  const { changes } = feed()
  const finishes = new EventEmitter()
  const waiters = createCommandWaiters(changes, { onFinished: (listener) => finishes.on('finished', listener) })
  const c1 = stored('c1')
  const first = waiters.wait('c1', 60_000, { gone: new EventEmitter(), read: c1.read })
  const second = waiters.wait('c1', 60_000, { gone: new EventEmitter(), read: c1.read })
  const other = waiters.wait('c2', 60_000, { gone: new EventEmitter(), read: stored('c2').read })
  await new Promise((resolve) => setImmediate(resolve))
  const readsBefore = c1.reads
  // Not final: nobody is answered.
  finishes.emit('finished', command('c1', 'sent'))
  t.is(await within(first, 100), 'still waiting')
  const done = { ...command('c1', 'succeeded'), result: { ok: true } }
  finishes.emit('finished', done)
  t.is(await within(first), done)
  t.is(await within(second), done)
  t.is(c1.reads, readsBefore)
  t.is(await within(other, 100), 'still waiting')
  // The route's own announcement (a cancel) works the same way.
  waiters.finished(command('c2', 'cancelled'))
  t.is((await within(other) as Command).status, 'cancelled')
})

test('a waiter answers when its client goes away, and at its deadline with the state then', async (t) => {
  const { changes } = feed()
  const waiters = createCommandWaiters(changes)
  const gone = new EventEmitter()
  const c1 = stored('c1', 'queued')
  const leaving = waiters.wait('c1', 60_000, { gone, read: c1.read })
  await new Promise((resolve) => setImmediate(resolve))
  gone.emit('close')
  t.is((await within(leaving) as Command).status, 'queued')
  t.is(gone.listenerCount('close'), 0)
  const waiting = waiters.wait('c1', 50, { gone: new EventEmitter(), read: c1.read })
  c1.status = 'sent' // sent meanwhile, not finished
  t.is((await within(waiting) as Command).status, 'sent')
})

test('a command that finished before the registration does not wait; an unknown one answers undefined', async (t) => {
  const { changes } = feed()
  const waiters = createCommandWaiters(changes)
  t.is((await within(waiters.wait('c1', 60_000, { gone: new EventEmitter(), read: stored('c1', 'failed').read })) as Command).status, 'failed')
  t.is(await within(waiters.wait('c3', 60_000, { gone: new EventEmitter(), read: async () => undefined })), undefined)
})

test('a failed read fails the wait', async (t) => {
  const { changes } = feed()
  const waiters = createCommandWaiters(changes)
  await t.throwsAsync(waiters.wait('c1', 60_000, { gone: new EventEmitter(), read: async () => { throw new Error('database away') } }), { message: 'database away' })
})

test('a late second wake-up of a finished waiter does not unregister a newer waiter of the same command', async (t) => {
  const { changes, notify } = feed()
  const waiters = createCommandWaiters(changes)
  // The first waiter reaches its deadline while its first read is still running…
  let answer!: (c: Command) => void
  const slowRead = new Promise<Command>((resolve) => { answer = resolve })
  let calls = 0
  const first = waiters.wait('c1', 10, { gone: new EventEmitter(), read: () => ++calls === 1 ? slowRead : Promise.resolve(command('c1', 'sent')) })
  t.is((await first)!.status, 'sent')
  // …a second request starts waiting for the same command…
  const c1 = stored('c1')
  const second = waiters.wait('c1', 60_000, { gone: new EventEmitter(), read: c1.read })
  // …then the first read answers (a second wake-up of the first waiter).
  answer(command('c1', 'succeeded'))
  await slowRead
  await new Promise((resolve) => setImmediate(resolve))
  c1.status = 'succeeded'
  notify('c1')
  t.is((await within(second) as Command).status, 'succeeded')
})

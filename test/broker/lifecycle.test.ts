// The one ordered list of lifetimes and the one periodic helper, on their own.
import test from 'ava'
import { pino } from 'pino'
import { createLifecycle } from '../../broker/lifecycle.js'
import { every } from '../../broker/periodic.js'
import { waitFor } from '../helpers/wait.js'

const log = pino({ level: 'silent' })

test('components stop by phase, and within a phase the last started first; a failing step does not stop the rest; stop() is idempotent', async (t) => {
  const l = createLifecycle(log)
  const ran: string[] = []
  const add = (name: string, phase: Parameters<typeof l.add>[1], fail = false) => l.add(name, phase, async () => { ran.push(name); if (fail) throw new Error('x') })
  add('pool', 'database')
  add('change feed', 'database')
  add('http', 'serve', true)
  add('drain', 'drain')
  add('rollouts', 'work')
  add('broker', 'connections')
  add('accept', 'accept')
  add('retention', 'work')
  await Promise.all([l.stop(), l.stop()])
  t.deepEqual(ran, ['accept', 'drain', 'retention', 'rollouts', 'broker', 'http', 'change feed', 'pool'])
  t.throws(() => add('late', 'work'), { message: /while the process is stopping/ })
})

test('a periodic task never runs twice at once, runNow joins the run in flight, close waits for it', async (t) => {
  let running = 0; let max = 0; let runs = 0
  let release = () => {}
  const p = every(async () => {
    running++; runs++; max = Math.max(max, running)
    await new Promise<void>((resolve) => { release = resolve })
    running--
  }, { intervalMs: 5, onError: () => {} })
  await waitFor(() => runs === 1)
  await new Promise((resolve) => setTimeout(resolve, 30)) // ticks pass while the run is in flight
  t.is(runs, 1, 'ticks skipped while running')
  const joined = p.runNow()
  let closed = false
  const closing = p.close().then(() => { closed = true })
  await new Promise((resolve) => setTimeout(resolve, 20))
  t.false(closed, 'close waits for the run in flight')
  release()
  await Promise.all([joined, closing])
  t.is(max, 1)
  const after = runs
  await new Promise((resolve) => setTimeout(resolve, 30))
  t.is(runs, after, 'no runs after close')
})

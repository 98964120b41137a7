import test from 'ava'
import { backoffDelay, createBackoff } from '../../broker/backoff.js'

test('the delay doubles from the base up to the cap; full jitter spans [0, cap], equal jitter [cap/2, cap]', (t) => {
  const opts = { baseMs: 100, maxMs: 1000 }
  t.is(backoffDelay(0, { ...opts, jitter: 'full' }, () => 1), 100)
  t.is(backoffDelay(3, { ...opts, jitter: 'full' }, () => 1), 800)
  t.is(backoffDelay(4, { ...opts, jitter: 'full' }, () => 1), 1000, 'capped')
  t.is(backoffDelay(1000, { ...opts, jitter: 'full' }, () => 1), 1000, 'no overflow for large attempts')
  t.is(backoffDelay(3, { ...opts, jitter: 'full' }, () => 0), 0)
  t.is(backoffDelay(3, { ...opts, jitter: 'equal' }, () => 0), 400)
  t.is(backoffDelay(3, { ...opts, jitter: 'equal' }, () => 1), 800)
})

test('the backoff grows, is jittered below its cap, gives up after its retries and starts over after a success', (t) => {
  const b = createBackoff({ baseMs: 100, maxMs: 1000, jitter: 'full', retries: 5 }, () => 0.999)
  const delays = [b.next(), b.next(), b.next(), b.next(), b.next()].map((d) => Math.round(d!))
  t.deepEqual(delays, [100, 200, 400, 799, 999])
  t.is(b.next(), undefined, 'retries spent')
  b.reset()
  t.is(Math.round(b.next()!), 100)
  const spread = createBackoff({ baseMs: 1000, maxMs: 1000, jitter: 'full' })
  const samples = Array.from({ length: 200 }, () => spread.next()!)
  t.true(samples.every((d) => d >= 0 && d < 1000) && Math.max(...samples) - Math.min(...samples) > 500, 'full jitter spreads a crowd over [0, cap)')
})

import test from 'ava'
import { backoffDelay } from '../../broker/backoff.js'

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

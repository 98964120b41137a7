import test from 'ava'
import { createLogSampler } from '../../../broker/mqtt/log-sampler.js'

test('at most max lines per key and interval; the next line says how many were left out', (t) => {
  const s = createLogSampler({ max: 2, intervalMs: 1000 })
  t.is(s.take('a', 0), 0)
  t.is(s.take('a', 10), 0)
  t.is(s.take('a', 20), undefined)
  t.is(s.take('a', 30), undefined)
  t.is(s.take('b', 40), 0, 'keys are independent')
  t.is(s.take('a', 1000), 2, 'a new window logs again and reports the two left out')
  t.is(s.take('a', 1001), 0)
})

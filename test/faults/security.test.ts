// Issue 7, fault test 5 (security), the parts not covered elsewhere:
// SQL meta-characters are stored literally, and the secret check takes the
// same time however much of the secret is right.
import test from 'ava'
import { generateSecret, hashSecret, verifySecret } from '../../devices/device-secret.js'
import { startTestBroker, connectDevice, api } from '../helpers/broker.js'
import { T0 } from '../helpers/time.js'

test('SQL meta-characters in names, labels and payloads are stored literally', async (t) => {
  const b = await startTestBroker()
  t.teardown(async () => { await b.close(); await b.db.drop() })
  const evil = "x'); DROP TABLE devices; -- \\ \" $1 %s"
  t.is((await api(b.app, 'POST', '/v1/devices', { id: 'sql-0', labels: { note: "a'b" } })).status, 400, 'label values are restricted to a safe alphabet')
  const created = await api(b.app, 'POST', '/v1/devices', { id: 'sql-1', name: evil, labels: { note: 'a.b' } })
  t.is(created.status, 201)
  t.is((await api(b.app, 'POST', '/v1/devices', { id: "x'; --" })).status, 400, 'ids cannot carry them at all')
  const got = await api(b.app, 'GET', '/v1/devices/sql-1')
  t.is(got.body.name, evil)
  t.deepEqual(got.body.labels, { note: 'a.b' })
  const c = await connectDevice(b.url, 'sql-1', created.body.secret)
  await c.publishAsync('devices/sql-1/telemetry', JSON.stringify({ ts: T0, s: evil }), { qos: 1 })
  await c.endAsync()
  t.is((await api(b.app, 'GET', '/v1/devices/sql-1/telemetry')).body.items[0].payload.s, evil)
  t.is((await b.app.pool.query('SELECT count(*)::int AS n FROM devices')).rows[0].n, 1, 'the devices table is still there')
})

test('the secret check takes the same time whether almost all or none of the secret is right', (t) => {
  const secret = generateSecret()
  const stored = hashSecret(secret)
  // Both guesses as flat strings made the same way: a string built by
  // concatenation (a rope) or by repeat() is encoded at its own speed, which
  // on Node 22 alone made the two differ by 25% (nothing to do with the secret).
  const flat = (s: string) => Buffer.from(s, 'utf8').toString('utf8')
  const almost = flat(secret.slice(0, -1) + (secret.endsWith('A') ? 'B' : 'A'))
  const none = flat('z'.repeat(secret.length))
  const time = (guess: string) => {
    const t0 = process.hrtime.bigint()
    for (let i = 0; i < 5000; i++) verifySecret(guess, stored)
    return Number(process.hrtime.bigint() - t0)
  }
  for (let i = 0; i < 3; i++) { time(almost); time(none) } // warm up
  // The fastest of 15 rounds of each, taken alternately: other processes
  // sharing the cores (the rest of the suite) only ever add time, so the
  // minimum is what the check itself costs.
  let bestAlmost = Infinity
  let bestNone = Infinity
  for (let i = 0; i < 15; i++) {
    if (i % 2 === 0) { bestAlmost = Math.min(bestAlmost, time(almost)); bestNone = Math.min(bestNone, time(none)) } else { bestNone = Math.min(bestNone, time(none)); bestAlmost = Math.min(bestAlmost, time(almost)) }
  }
  const ratio = bestAlmost / bestNone
  t.true(ratio > 0.8 && ratio < 1.25, `time ratio almost-right / all-wrong (fastest of 15 each) = ${ratio.toFixed(3)}`)
  t.true(verifySecret(secret, stored))
  t.false(verifySecret(almost, stored))
})

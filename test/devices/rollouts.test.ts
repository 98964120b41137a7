import test from 'ava'
import type { MqttClient } from 'mqtt'
import { startTestBroker, connectDevice, api, type TestBroker } from '../helpers/broker.js'
import { waitFor } from '../helpers/wait.js'

let broker: TestBroker
test.before(async () => { broker = await startTestBroker({ API_RATE_LIMIT_PER_MINUTE: 100_000 }) })
test.after.always(async () => { await broker?.close(); await broker?.db.drop() })

/** Devices that apply their config and report the version, as the contract says. */
async function fleet (prefix: string, n: number, labels: Record<string, string>): Promise<MqttClient[]> {
  const res = await broker.app.http.inject({ method: 'POST', url: '/v1/devices/bulk', headers: { authorization: 'Bearer test-admin-token-0123456789' }, payload: { count: n, idPrefix: prefix, labels } })
  const creds = res.body.trim().split('\n').map((l) => JSON.parse(l) as { id: string, secret: string })
  return await Promise.all(creds.map(async (c) => {
    // A slow CONNACK on a busy machine (all test files run at once) is not what this tests.
    const client = await connectDevice(broker.url, c.id, c.secret, { connectTimeout: 30_000 })
    client.on('message', (topic, payload) => {
      if (topic === `devices/${c.id}/config`) {
        const { version } = JSON.parse(payload.toString()) as { version: number }
        client.publish(`devices/${c.id}/config/reported`, JSON.stringify({ version }), { qos: 1 })
      }
    })
    await client.subscribeAsync(`devices/${c.id}/config`, { qos: 1 })
    return client
  }))
}

test('a rollout over many devices completes and its counts are right', async (t) => {
  const clients = await fleet('ro', 200, { site: 'lyon' })
  await fleet('ro-other', 5, { site: 'nice' })
  const created = await api(broker.app, 'POST', '/v1/rollouts', { selector: 'site=lyon', config: { fw: '2.0' } })
  t.is(created.status, 201)
  t.is(created.body.counts.targeted, 200)
  const done = await waitFor(async () => {
    const r = (await api(broker.app, 'GET', `/v1/rollouts/${created.body.id}`)).body
    return r.counts.inSync === 200 && r.status === 'completed' ? r : undefined
  }, { timeoutMs: 20_000, what: 'every device in sync' })
  t.is(done.status, 'completed')
  t.deepEqual(done.counts, { targeted: 200, pending: 0, delivered: 0, applied: 200, failed: 0, expired: 0, pushed: 200, inSync: 200 })
  const sample = (await api(broker.app, 'GET', '/v1/devices/ro-17/config')).body
  t.deepEqual(sample.desired.config, { fw: '2.0' })
  t.true(sample.inSync)
  t.is((await api(broker.app, 'GET', '/v1/devices/ro-other-1/config')).body.desired, null, 'devices outside the selector are untouched')
  await Promise.all(clients.map((c) => c.endAsync()))
})

test('a rate-limited rollout can be paused, resumed and cancelled', async (t) => {
  await fleet('slow', 40, { site: 'bonn' })
  const r = (await api(broker.app, 'POST', '/v1/rollouts', { selector: 'site=bonn', config: { v: 1 }, ratePerSecond: 10 })).body
  t.is(r.ratePerSecond, 10)
  await waitFor(async () => (await api(broker.app, 'GET', `/v1/rollouts/${r.id}`)).body.counts.pushed >= 3)
  const paused = await api(broker.app, 'POST', `/v1/rollouts/${r.id}/pause`)
  t.is(paused.body.status, 'paused')
  const atPause = (await api(broker.app, 'GET', `/v1/rollouts/${r.id}`)).body.counts.pushed
  t.true(atPause < 40, 'rate limit holds')
  t.is((await api(broker.app, 'POST', `/v1/rollouts/${r.id}/pause`)).status, 409)
  t.is((await api(broker.app, 'POST', `/v1/rollouts/${r.id}/resume`)).body.status, 'running')
  await waitFor(async () => (await api(broker.app, 'GET', `/v1/rollouts/${r.id}`)).body.counts.pushed > atPause)
  const cancelled = await api(broker.app, 'POST', `/v1/rollouts/${r.id}/cancel`)
  t.is(cancelled.body.status, 'cancelled')
  const pushedAtCancel = cancelled.body.counts.pushed
  // After a few more runner ticks nothing more was pushed.
  const before = Date.now()
  await waitFor(() => Date.now() - before > 300)
  t.is((await api(broker.app, 'GET', `/v1/rollouts/${r.id}`)).body.counts.pushed, pushedAtCancel)
  t.is((await api(broker.app, 'POST', `/v1/rollouts/${r.id}/resume`)).status, 409)
  t.is((await api(broker.app, 'GET', '/v1/rollouts/00000000-0000-0000-0000-000000000000')).status, 404)
  t.is((await api(broker.app, 'POST', '/v1/rollouts', { selector: 'bad selector', config: {} })).status, 400)
})

test('a rollout\'s rate holds for the whole cluster, not per replica', async (t) => {
  // Two replicas on their own database (not this file's: their rollout
  // runners would also push the other tests' rollouts), both running it.
  const first = await startTestBroker({ API_RATE_LIMIT_PER_MINUTE: 100_000 })
  const second = await startTestBroker({ API_RATE_LIMIT_PER_MINUTE: 100_000 }, first.db)
  t.teardown(async () => { await second.close(); await first.close(); await first.db.drop() })
  const res = await first.app.http.inject({ method: 'POST', url: '/v1/devices/bulk', headers: { authorization: 'Bearer test-admin-token-0123456789' }, payload: { count: 300, idPrefix: 'rate', labels: { site: 'rate' } } })
  t.is(res.statusCode, 200)
  const rate = 40
  const r = (await api(first.app, 'POST', '/v1/rollouts', { selector: 'site=rate', config: { v: 1 }, ratePerSecond: rate })).body
  const t0 = Date.now()
  await waitFor(() => Date.now() - t0 >= 3000, { timeoutMs: 5000 })
  const pushed = (await api(second.app, 'GET', `/v1/rollouts/${r.id}`)).body.counts.pushed as number
  const seconds = (Date.now() - t0) / 1000
  t.log(`${pushed} pushed in ${seconds.toFixed(1)} s at ${rate}/s by two replicas`)
  // At most the rate over the time plus one second's burst (and a little for
  // the time between creating the rollout and t0); per replica it would be
  // about twice that.
  t.true(pushed <= Math.ceil(rate * (seconds + 1.25)), `${pushed} pushed: the rate held across replicas`)
  t.true(pushed >= rate * (seconds - 1), `${pushed} pushed: and the rollout did progress at its rate`)
  await api(first.app, 'POST', `/v1/rollouts/${r.id}/cancel`)
})

import test from 'ava'
import type { MqttClient } from 'mqtt'
import { startTestBroker, connectDevice, api, type TestBroker } from '../helpers/broker.js'
import { waitFor } from '../helpers/wait.js'

let broker: TestBroker
test.before(async () => { broker = await startTestBroker({ API_RATE_LIMIT_PER_MINUTE: 100_000 }) })
test.after.always(async () => { await broker?.close(); await broker?.db.drop() })

function collect (client: MqttClient, topic: string): unknown[] {
  const got: unknown[] = []
  client.on('message', (t, payload) => { if (t === topic) got.push(JSON.parse(payload.toString())) })
  return got
}

test('a desired config reaches an online subscribed device at once, with its version', async (t) => {
  const dev = (await api(broker.app, 'POST', '/v1/devices', { id: 'cfg-online' })).body
  const client = await connectDevice(broker.url, dev.id, dev.secret)
  const got = collect(client, 'devices/cfg-online/config')
  await client.subscribeAsync('devices/cfg-online/config', { qos: 1 })
  const put = await api(broker.app, 'PUT', '/v1/devices/cfg-online/config', { config: { interval: 5 } })
  t.is(put.status, 200)
  t.is(put.body.version, 1)
  t.true(put.body.delivered)
  await waitFor(() => got.length === 1)
  t.deepEqual(got[0], { version: 1, config: { interval: 5 } })
  await client.endAsync()
})

test('a device that was offline gets the latest config when it subscribes (from PostgreSQL)', async (t) => {
  const dev = (await api(broker.app, 'POST', '/v1/devices', { id: 'cfg-later' })).body
  await api(broker.app, 'PUT', '/v1/devices/cfg-later/config', { config: { a: 1 } })
  const second = await api(broker.app, 'PUT', '/v1/devices/cfg-later/config', { config: { a: 2 } })
  t.false(second.body.delivered)
  const client = await connectDevice(broker.url, dev.id, dev.secret)
  const got = collect(client, 'devices/cfg-later/config')
  await client.subscribeAsync('devices/cfg-later/config', { qos: 1 })
  await waitFor(() => got.length === 1)
  t.deepEqual(got[0], { version: 2, config: { a: 2 } })
  await client.endAsync()
})

test('a persistent session that reconnects gets the latest config without subscribing again', async (t) => {
  const dev = (await api(broker.app, 'POST', '/v1/devices', { id: 'cfg-session' })).body
  const first = await connectDevice(broker.url, dev.id, dev.secret, { clean: false })
  await first.subscribeAsync('devices/cfg-session/#', { qos: 1 })
  await first.endAsync()
  await api(broker.app, 'PUT', '/v1/devices/cfg-session/config', { config: { mode: 'eco' } })
  const again = await connectDevice(broker.url, dev.id, dev.secret, { clean: false })
  const got = collect(again, 'devices/cfg-session/config')
  await waitFor(() => got.some((m) => (m as { version: number }).version === 1))
  t.pass()
  await again.endAsync()
})

test('ifVersion: optimistic concurrency (409 on mismatch)', async (t) => {
  await api(broker.app, 'POST', '/v1/devices', { id: 'cfg-cas' })
  t.is((await api(broker.app, 'PUT', '/v1/devices/cfg-cas/config', { config: { x: 1 }, ifVersion: 0 })).body.version, 1)
  const conflict = await api(broker.app, 'PUT', '/v1/devices/cfg-cas/config', { config: { x: 2 }, ifVersion: 0 })
  t.is(conflict.status, 409)
  t.is(conflict.body.code, 'version_conflict')
  t.is((await api(broker.app, 'PUT', '/v1/devices/cfg-cas/config', { config: { x: 2 }, ifVersion: 1 })).body.version, 2)
  t.is((await api(broker.app, 'PUT', '/v1/devices/cfg-cas/config', { config: { x: 3 }, ifVersion: 1 })).status, 409)
  t.is((await api(broker.app, 'PUT', '/v1/devices/nobody/config', { config: {} })).status, 404)
  t.is((await api(broker.app, 'PUT', '/v1/devices/cfg-cas/config', { config: [1, 2] })).status, 400)
})

test('the reported version flips the sync state', async (t) => {
  const dev = (await api(broker.app, 'POST', '/v1/devices', { id: 'cfg-sync' })).body
  await api(broker.app, 'PUT', '/v1/devices/cfg-sync/config', { config: { on: true } })
  let state = await api(broker.app, 'GET', '/v1/devices/cfg-sync/config')
  t.false(state.body.inSync)
  t.is(state.body.desired.version, 1)
  t.is(state.body.reported, null)
  const client = await connectDevice(broker.url, dev.id, dev.secret)
  // QoS 1: the PUBACK comes once the report is recorded.
  await client.publishAsync('devices/cfg-sync/config/reported', JSON.stringify({ version: 1, config: { on: true } }), { qos: 1 })
  state = await api(broker.app, 'GET', '/v1/devices/cfg-sync/config')
  t.true(state.body.inSync)
  t.is(state.body.reported.version, 1)
  t.true((await api(broker.app, 'GET', '/v1/devices/cfg-sync')).body.config.inSync)
  // A malformed report, a version never sent, or a value PostgreSQL cannot
  // hold: counted and ignored (acknowledged), the device keeps its connection.
  await client.publishAsync('devices/cfg-sync/config/reported', 'nonsense', { qos: 1 })
  await client.publishAsync('devices/cfg-sync/config/reported', JSON.stringify({ version: 1e10 }), { qos: 1 })
  await client.publishAsync('devices/cfg-sync/config/reported', JSON.stringify({ version: 1, config: { s: 'a\u0000' } }), { qos: 1 })
  await client.publishAsync('devices/cfg-sync/config/reported', JSON.stringify({ version: 7 }), { qos: 1 })
  t.is((await api(broker.app, 'GET', '/v1/devices/cfg-sync/config')).body.reported.version, 1)
  t.true(client.connected)
  const m = await broker.app.metrics.registry.getSingleMetric('fleetgate_device_messages_total')!.get()
  t.true(m.values.some((v) => v.labels.outcome === 'invalid' && v.value >= 1))
  await client.endAsync()
})

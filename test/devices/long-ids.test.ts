// Device ids are up to 128 characters (devices/device-id.ts), and every
// /v1/devices/{id} route takes the longest one: fastify's router refused
// path parameters over 100 characters with a bare 414, before even looking
// at the token.
import test from 'ava'
import { startTestBroker, connectDevice, api, type TestBroker } from '../helpers/broker.js'
import { waitFor } from '../helpers/wait.js'

let broker: TestBroker
test.before(async () => { broker = await startTestBroker({ API_RATE_LIMIT_PER_MINUTE: 100_000 }) })
test.after.always(async () => { await broker?.close(); await broker?.db.drop() })

const longId = (c: string) => c + 'x'.repeat(100) + ':.@_-' + '0123456789abcdefghijkl'
test('ids are 128 characters here', (t) => { t.is(longId('a').length, 128) })

test('every device route works with a 128-character id', async (t) => {
  const id = longId('a')
  const created = await api(broker.app, 'POST', '/v1/devices', { id, labels: { fleet: 'long' } })
  t.is(created.status, 201)
  const base = `/v1/devices/${id}`

  const got = await api(broker.app, 'GET', base)
  t.is(got.status, 200, JSON.stringify(got.body))
  t.is(got.body.id, id)
  t.deepEqual((await api(broker.app, 'GET', '/v1/devices?labels=fleet=long')).body.items.map((d: { id: string }) => d.id), [id])

  const patched = await api(broker.app, 'PATCH', base, { name: 'long one' })
  t.is(patched.status, 200)
  t.is(patched.body.name, 'long one')

  const rotated = await api(broker.app, 'POST', `${base}/secret`)
  t.is(rotated.status, 200)
  // The id works over MQTT too, with the rotated secret, and gets its config.
  const client = await connectDevice(broker.url, id, rotated.body.secret)
  const configs: unknown[] = []
  client.on('message', (topic, payload) => { if (topic === `devices/${id}/config`) configs.push(JSON.parse(payload.toString())) })
  await client.subscribeAsync(`devices/${id}/config`, { qos: 1 })

  const put = await api(broker.app, 'PUT', `${base}/config`, { config: { interval: 5 } })
  t.is(put.status, 200)
  t.is(put.body.version, 1)
  await waitFor(() => configs.length === 1, { what: 'config delivered to the long id' })
  t.deepEqual((await api(broker.app, 'GET', `${base}/config`)).body.desired.config, { interval: 5 })

  const cmd = await api(broker.app, 'POST', `${base}/commands`, { name: 'reboot' })
  t.is(cmd.status, 202)
  t.is(cmd.body.deviceId, id)
  t.is((await api(broker.app, 'GET', `/v1/commands/${cmd.body.id}`)).body.deviceId, id)
  t.is((await api(broker.app, 'GET', `${base}/commands`)).body.items.length, 1)

  await client.publishAsync(`devices/${id}/telemetry`, JSON.stringify({ t: 21.5 }), { qos: 1 })
  await client.endAsync()
  const readings = await api(broker.app, 'GET', `${base}/telemetry`)
  t.is(readings.status, 200)
  t.deepEqual(readings.body.items.map((r: { payload: unknown }) => r.payload), [{ t: 21.5 }])

  const disabled = await api(broker.app, 'PATCH', base, { disabled: true })
  t.is(disabled.status, 200)
  t.true(disabled.body.disabled)

  t.is((await api(broker.app, 'DELETE', base)).status, 204)
  t.is((await api(broker.app, 'GET', base)).status, 404)
})

test('a 128-character id without a token is 401, like any other', async (t) => {
  const r = await api(broker.app, 'GET', `/v1/devices/${longId('b')}`, undefined, null)
  t.is(r.status, 401)
  t.is(r.body.code, 'unauthorized')
})

test('longer ids are 400 or 404, and only absurd path segments 414 uri_too_long, all as problem+json', async (t) => {
  const tooLong = longId('c') + 'z'
  const r = await api(broker.app, 'GET', `/v1/devices/${tooLong}`)
  t.is(r.status, 400)
  t.is(r.body.code, 'invalid_request')
  t.is((await api(broker.app, 'GET', `/v1/commands/${'f'.repeat(200)}`)).status, 400)

  for (const token of [undefined, null] as const) {
    const huge = await api(broker.app, 'GET', `/v1/devices/${'h'.repeat(600)}`, undefined, token)
    t.is(huge.status, 414)
    t.is(huge.body.code, 'uri_too_long')
    t.regex(String(huge.headers['content-type']), /^application\/problem\+json/)
    t.truthy(huge.body.requestId)
    t.is(huge.headers['x-request-id'], huge.body.requestId)
  }
})

import test from 'ava'
import mqtt from 'mqtt'
import { rawExchange } from '../../helpers/raw-mqtt.js'
import { startTestBroker, connectDevice, connackCode, type TestBroker } from '../../helpers/broker.js'

let broker: TestBroker
test.before(async () => { broker = await startTestBroker() })
test.after.always(async () => { await broker?.close(); await broker?.db.drop() })

async function refusals (code: string): Promise<number> {
  const m = await broker.app.metrics.registry.getSingleMetric('fleetgate_mqtt_connack_refusals_total')!.get()
  return m.values.filter((v) => v.labels.code === code).reduce((a, v) => a + v.value, 0)
}

test('a device with its own id and secret connects', async (t) => {
  const dev = await broker.app.devices.create({ id: 'auth-ok' })
  const client = await connectDevice(broker.url, dev.id, dev.secret)
  t.true(client.connected)
  await client.endAsync()
})

test.serial('a wrong secret gets CONNACK 4 and is counted', async (t) => {
  const dev = await broker.app.devices.create({ id: 'auth-bad' })
  const before = await refusals('4')
  t.is(await connackCode(broker.url, { clientId: dev.id, username: dev.id, password: dev.secret.slice(0, -1) + 'x' }), 4)
  t.is(await refusals('4'), before + 1)
})

test('an unknown device gets CONNACK 4 (existence is not revealed)', async (t) => {
  t.is(await connackCode(broker.url, { clientId: 'nobody', username: 'nobody', password: 'whatever' }), 4)
})

test('a disabled device gets CONNACK 5, also while its credentials are cached', async (t) => {
  const dev = await broker.app.devices.create({ id: 'auth-disabled' })
  const c = await connectDevice(broker.url, dev.id, dev.secret) // caches the credentials
  await c.endAsync()
  await broker.app.devices.setDisabled(dev.id, true)
  t.is(await connackCode(broker.url, { clientId: dev.id, username: dev.id, password: dev.secret }), 5)
  await broker.app.devices.setDisabled(dev.id, false)
  const again = await connectDevice(broker.url, dev.id, dev.secret)
  t.true(again.connected)
  await again.endAsync()
})

test('a rotated secret stops working at once', async (t) => {
  const dev = await broker.app.devices.create({ id: 'auth-rotate' })
  const c = await connectDevice(broker.url, dev.id, dev.secret)
  await c.endAsync()
  const rotated = await broker.app.devices.rotateSecret(dev.id)
  t.is(await connackCode(broker.url, { clientId: dev.id, username: dev.id, password: dev.secret }), 4)
  const again = await connectDevice(broker.url, dev.id, rotated!.secret)
  t.true(again.connected)
  await again.endAsync()
})

test('client id must equal the username (CONNACK 2)', async (t) => {
  const dev = await broker.app.devices.create({ id: 'auth-mismatch' })
  t.is(await connackCode(broker.url, { clientId: 'someone-else', username: dev.id, password: dev.secret }), 2)
})

test('a malformed client id is refused (CONNACK 2)', async (t) => {
  for (const id of ['a/b', '$sys', 'x+', '..']) {
    t.is(await connackCode(broker.url, { clientId: id, username: id, password: 'p' }), 2, id)
  }
})

test('without credentials and with anonymous access off: CONNACK 5', async (t) => {
  t.is(await connackCode(broker.url, { clientId: 'anon-1' }), 5)
})

test('zero-length client id with CleanSession=0 gets CONNACK 2 [MQTT-3.1.3-8]', async (t) => {
  // Client libraries refuse to send this, so the CONNECT is written byte by byte:
  // fixed header, "MQTT", level 4, flags 0 (CleanSession=0), keepalive 30, client id of length 0.
  const connect = Buffer.from([0x10, 12, 0, 4, 0x4d, 0x51, 0x54, 0x54, 4, 0x00, 0, 30, 0, 0])
  const reply = await rawExchange(broker.app.mqttPort, [connect])
  t.is(reply[0]?.cmd, 'connack')
  t.is((reply[0] as { returnCode?: number } | undefined)?.returnCode, 2)
})

test('a device id used as a second connection takes over the first [MQTT-3.1.4-2]', async (t) => {
  const dev = await broker.app.devices.create({ id: 'auth-takeover' })
  const first = await connectDevice(broker.url, dev.id, dev.secret)
  const closed = new Promise<void>((resolve) => first.once('close', () => resolve()))
  const second = await connectDevice(broker.url, dev.id, dev.secret)
  await closed
  t.true(second.connected)
  await second.endAsync()
  first.end(true)
})

test('secrets are long random strings and the database holds only their hash', async (t) => {
  const dev = await broker.app.devices.create({ id: 'auth-hash' })
  t.true(Buffer.from(dev.secret, 'base64url').length >= 16)
  const { rows } = await broker.app.pool.query('SELECT secret_hash FROM devices WHERE id = $1', [dev.id])
  t.false(rows[0].secret_hash.includes(dev.secret))
  t.regex(rows[0].secret_hash, /^hmac-sha256\$/)
})

test('mqtt client reference is real (guards against a mocked transport)', (t) => {
  t.is(typeof mqtt.connect, 'function')
})

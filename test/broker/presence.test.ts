import test from 'ava'
import pg from 'pg'
import { startTestBroker, connectDevice, type TestBroker } from '../helpers/broker.js'
import { rawExchange } from '../helpers/raw-mqtt.js'
import { waitFor } from '../helpers/wait.js'

let broker: TestBroker
let db: pg.Pool
test.before(async () => {
  broker = await startTestBroker({ PRESENCE_FLUSH_MS: 50 })
  db = new pg.Pool({ connectionString: broker.db.url, max: 2 })
})
test.after.always(async () => { await db?.end(); await broker?.close(); await broker?.db.drop() })

async function presence (id: string) {
  const { rows } = await db.query<{ online: boolean, last_seen_at: Date | null, connected_at: Date | null }>(
    'SELECT online, last_seen_at, connected_at FROM devices WHERE id = $1', [id])
  return rows[0]!
}

test('connect sets online and last seen; a clean disconnect sets offline', async (t) => {
  const dev = await broker.app.devices.create({ id: 'presence-1' })
  t.false((await presence(dev.id)).online)
  const client = await connectDevice(broker.url, dev.id, dev.secret)
  const on = await waitFor(async () => { const p = await presence(dev.id); return p.online ? p : undefined }, { what: 'online' })
  t.truthy(on.connected_at)
  t.truthy(on.last_seen_at)
  await client.endAsync()
  const off = await waitFor(async () => { const p = await presence(dev.id); return !p.online ? p : undefined }, { what: 'offline' })
  t.true(off.last_seen_at!.getTime() >= on.last_seen_at!.getTime())
})

test('activity moves last seen forward', async (t) => {
  const dev = await broker.app.devices.create({ id: 'presence-seen' })
  const client = await connectDevice(broker.url, dev.id, dev.secret)
  const first = await waitFor(async () => { const p = await presence(dev.id); return p.online ? p.last_seen_at! : undefined })
  await waitFor(() => Date.now() > first.getTime() + 5)
  await client.publishAsync(`devices/${dev.id}/telemetry`, '{"v":1}', { qos: 1 })
  await waitFor(async () => (await presence(dev.id)).last_seen_at!.getTime() > first.getTime(), { what: 'last seen to move' })
  t.pass()
  await client.endAsync()
})

test('keepalive loss flips the device offline', async (t) => {
  const dev = await broker.app.devices.create({ id: 'presence-ka' })
  // CONNECT with a 1 s keepalive, then silence: the broker closes after 1.5 s [MQTT-3.1.2-24].
  const exchange = rawExchange(broker.app.mqttPort, [{
    cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId: dev.id, username: dev.id, password: Buffer.from(dev.secret), clean: true, keepalive: 1
  }], { untilPackets: 99, timeoutMs: 10_000 })
  await waitFor(async () => (await presence(dev.id)).online, { what: 'online' })
  const received = await exchange // resolves when the broker closes the socket
  t.is(received[0]?.cmd, 'connack')
  await waitFor(async () => !(await presence(dev.id)).online, { what: 'offline after keepalive loss' })
  const m = await broker.app.metrics.registry.getSingleMetric('fleetgate_mqtt_disconnects_total')!.get()
  t.true(m.values.some((v) => v.labels.reason === 'keepalive_timeout' && v.value >= 1))
})

test('a take-over by the same device id keeps it online', async (t) => {
  const dev = await broker.app.devices.create({ id: 'presence-takeover' })
  const first = await connectDevice(broker.url, dev.id, dev.secret)
  await waitFor(async () => (await presence(dev.id)).online)
  const firstClosed = new Promise<void>((resolve) => first.once('close', () => resolve()))
  const second = await connectDevice(broker.url, dev.id, dev.secret)
  await firstClosed
  // Let several presence flushes pass, then the device must still be online.
  const flushes = async () => (await broker.app.metrics.registry.getSingleMetric('fleetgate_presence_flushes_total')!.get()).values.reduce((a, v) => a + v.value, 0)
  const f0 = await flushes()
  await waitFor(async () => (await flushes()) >= f0 + 1 && broker.app.presence.pending === 0, { what: 'presence flush' })
  t.true((await presence(dev.id)).online)
  first.end(true)
  await second.endAsync()
  await waitFor(async () => !(await presence(dev.id)).online, { what: 'offline after the second disconnects' })
})

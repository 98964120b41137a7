import test from 'ava'
import pg from 'pg'
import { startTestBroker, connectDevice, type TestBroker } from '../../helpers/broker.js'
import { rawExchange } from '../../helpers/raw-mqtt.js'
import { waitFor } from '../../helpers/wait.js'

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

test('a live replica presumed dead by another (late heartbeats) announces its devices again', async (t) => {
  const b = await startTestBroker({ PRESENCE_FLUSH_MS: 50, BROKER_HEARTBEAT_MS: 100, BROKER_EXPIRY_MS: 1000 })
  const sql = new pg.Pool({ connectionString: b.db.url, max: 1 })
  t.teardown(async () => { await sql.end(); await b.close(); await b.db.drop() })
  const dev = await b.app.devices.create({ id: 'revived-1' })
  const client = await connectDevice(b.url, dev.id, dev.secret)
  await waitFor(async () => (await sql.query('SELECT 1 FROM devices WHERE id = $1 AND online', [dev.id])).rows.length === 1, { what: 'online' })
  // What another replica's sweep does to a replica whose heartbeat it found stale.
  await sql.query('BEGIN')
  await sql.query('DELETE FROM brokers WHERE id = $1', [b.app.brokerId])
  await sql.query('UPDATE devices SET online = false WHERE broker_id = $1', [b.app.brokerId])
  await sql.query('COMMIT')
  await waitFor(async () => (await sql.query('SELECT 1 FROM devices WHERE id = $1 AND online AND broker_id = $2', [dev.id, b.app.brokerId])).rows.length === 1, { timeoutMs: 5000, what: 'online again after the next heartbeat' })
  t.is((await sql.query('SELECT 1 FROM brokers WHERE id = $1', [b.app.brokerId])).rows.length, 1, 'registered again')
  await client.endAsync()
})

test('devices of a replica that stopped heartbeating are set offline; a device connected elsewhere since is not', async (t) => {
  const b = await startTestBroker({ PRESENCE_FLUSH_MS: 50, BROKER_HEARTBEAT_MS: 100, BROKER_EXPIRY_MS: 500 })
  const sql = new pg.Pool({ connectionString: b.db.url, max: 1 })
  t.teardown(async () => { await sql.end(); await b.close(); await b.db.drop() })
  const here = await b.app.devices.create({ id: 'swept-here' })
  await b.app.devices.create({ id: 'swept-dead' })
  const client = await connectDevice(b.url, here.id, here.secret)
  await waitFor(async () => (await sql.query('SELECT 1 FROM devices WHERE id = $1 AND online', [here.id])).rows.length === 1, { what: 'online' })
  // A replica that died 10 s ago, still owning swept-dead.
  await sql.query("INSERT INTO brokers (id, heartbeat_at) VALUES ('dead-replica', now() - interval '10 seconds')")
  await sql.query("UPDATE devices SET online = true, broker_id = 'dead-replica', connected_at = now() - interval '1 minute' WHERE id = 'swept-dead'")
  await waitFor(async () => (await sql.query("SELECT 1 FROM devices WHERE id = 'swept-dead' AND NOT online")).rows.length === 1, { timeoutMs: 5000, what: 'swept-dead offline' })
  t.is((await sql.query("SELECT 1 FROM brokers WHERE id = 'dead-replica'")).rows.length, 0, 'the dead replica is forgotten')
  t.is((await sql.query('SELECT 1 FROM devices WHERE id = $1 AND online', [here.id])).rows.length, 1, 'the live replica\'s device stays online')
  const expired = (await b.app.metrics.registry.getSingleMetric('fleetgate_presence_expired_total')!.get()).values[0]?.value
  t.is(expired, 1)
  await client.endAsync()
})

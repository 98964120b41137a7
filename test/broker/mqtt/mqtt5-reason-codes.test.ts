// MQTT 5 reason codes the README lists as implemented (MQTT 5 support,
// reason-code tables) that mqtt5.test.ts does not reach: CONNACK 0x88 and
// 0x89, broker DISCONNECT 0x8B, 0x97, 0x95 and 0x8D. Each against a real
// broker of its own, with raw v5 packets (mqtt-packet, protocolVersion 5)
// where the exact packet matters, or a real v5 client (mqtt.js).
import test from 'ava'
import pg from 'pg'
import type { Packet } from 'mqtt-packet'
import { startTestBroker, connectDevice, type TestBroker } from '../../helpers/broker.js'
import type { Config } from '../../../broker/config.js'
import { waitFor } from '../../helpers/wait.js'
import { T0 } from '../../helpers/time.js'
import { rawConnection } from '../../helpers/raw-mqtt.js'

const raw = rawConnection

const connectV5 = (id: string, secret: string, extra: Record<string, unknown> = {}) =>
  ({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clientId: id, username: id, password: Buffer.from(secret), clean: true, keepalive: 30, ...extra }) as Partial<Packet>

/** A raw v5 connection of a new device, once its CONNACK (0) is in. */
async function connected (b: TestBroker, id: string, extra: Record<string, unknown> = {}) {
  const d = await b.app.devices.create({ id })
  const c = raw(b.app.mqttPort)
  c.send(connectV5(d.id, d.secret, extra))
  await waitFor(() => c.of('connack').length > 0, { what: 'CONNACK' })
  if (c.of('connack')[0].reasonCode !== 0) throw new Error(`CONNACK ${c.of('connack')[0].reasonCode}`)
  return c
}

async function metric (b: TestBroker, name: string, labels: Record<string, string> = {}) {
  const m = await b.app.metrics.registry.getSingleMetric(name)!.get()
  return m.values.filter((v) => Object.entries(labels).every(([k, x]) => v.labels[k] === x)).reduce((a, v) => a + v.value, 0)
}

async function withBroker (overrides: Partial<Config>, fn: (b: TestBroker) => Promise<void>) {
  const b = await startTestBroker(overrides)
  try { await fn(b) } finally { await b.close(); await b.db.drop() }
}

test('CONNACK 0x88 while the credential store (PostgreSQL) is unreachable', async (t) => {
  await withBroker({}, async (b) => {
    const d = await b.app.devices.create({ id: 'v5-store-down' }) // never looked up: not in the credential cache
    const admin = new pg.Client({ connectionString: process.env.FLEETGATE_TEST_ADMIN_URL })
    await admin.connect()
    try {
      // The database goes away: no new connections, the existing ones cut.
      await admin.query(`ALTER DATABASE ${b.db.name} ALLOW_CONNECTIONS false`)
      await admin.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1', [b.db.name])
      const c = raw(b.app.mqttPort)
      c.send(connectV5(d.id, d.secret))
      await waitFor(() => c.of('connack').length > 0, { what: 'CONNACK', timeoutMs: 15_000 })
      t.is(c.of('connack')[0].reasonCode, 0x88)
      t.is(c.of('connack')[0].properties?.reasonString, 'server unavailable: try again later', 'a fixed text, not the database error')
      c.close()
      t.true(await metric(b, 'fleetgate_mqtt_connack_refusals_total', { code: '3', reason: 'credential_store_unavailable' }) >= 1)
    } finally {
      await admin.query(`ALTER DATABASE ${b.db.name} ALLOW_CONNECTIONS true`)
      await admin.end()
    }
    // The same CONNECT is accepted once the store is back: it was the outage, not the credentials.
    const again = await waitFor(async () => {
      const c = raw(b.app.mqttPort)
      c.send(connectV5(d.id, d.secret))
      await waitFor(() => c.of('connack').length > 0, { what: 'CONNACK', timeoutMs: 15_000 })
      c.close()
      return c.of('connack')[0].reasonCode === 0 ? c : undefined
    }, { what: 'CONNACK 0 after the outage', timeoutMs: 20_000, intervalMs: 200 })
    t.truthy(again)
  })
})

test('CONNACK 0x89 (server busy) when the connect queue is full, with a reason string unless Request Problem Information = 0', async (t) => {
  // One CONNECT per second, none may wait: the first takes the only token.
  await withBroker({ MQTT_CONNECT_RATE_PER_SECOND: 1, MQTT_CONNECT_QUEUE: 0 }, async (b) => {
    const d = await b.app.devices.create({ id: 'v5-busy' })
    const first = raw(b.app.mqttPort)
    first.send(connectV5(d.id, d.secret))
    await waitFor(() => first.of('connack').length > 0, { what: 'first CONNACK' })
    t.is(first.of('connack')[0].reasonCode, 0)
    const busy = raw(b.app.mqttPort)
    busy.send(connectV5('v5-busy-2', 'whatever'))
    const quiet = raw(b.app.mqttPort)
    quiet.send(connectV5('v5-busy-3', 'whatever', { properties: { requestProblemInformation: false } }))
    await waitFor(() => busy.closed && quiet.closed, { what: 'refused connections closed' })
    t.is(busy.of('connack').length, 1)
    t.is(busy.of('connack')[0].reasonCode, 0x89)
    t.is(busy.of('connack')[0].properties?.reasonString, 'server busy: connect queue full')
    t.is(quiet.of('connack')[0]?.reasonCode, 0x89)
    t.is(quiet.of('connack')[0].properties?.reasonString, undefined)
    t.is(await metric(b, 'fleetgate_mqtt_connack_refusals_total', { code: String(0x89), reason: 'connect_queue_full' }), 2)
    first.close()
  })
})

test('CONNACK 0x97 (quota exceeded) past MQTT_MAX_CONNECTIONS, with a reason string unless Request Problem Information = 0; 3.1.1 is closed unanswered', async (t) => {
  await withBroker({ MQTT_MAX_CONNECTIONS: 2 }, async (b) => {
    const held = [await connected(b, 'v5-quota-1'), await connected(b, 'v5-quota-2')]
    const d = await b.app.devices.create({ id: 'v5-quota-3' })
    const over = raw(b.app.mqttPort)
    over.send(connectV5(d.id, d.secret))
    const quiet = raw(b.app.mqttPort)
    quiet.send(connectV5(d.id, d.secret, { properties: { requestProblemInformation: false } }))
    const legacy = raw(b.app.mqttPort, 4)
    legacy.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId: d.id, username: d.id, password: Buffer.from(d.secret), clean: true, keepalive: 30 } as Partial<Packet>)
    await waitFor(() => over.closed && quiet.closed && legacy.closed, { what: 'refused connections closed' })
    t.is(over.of('connack')[0]?.reasonCode, 0x97)
    t.is(over.of('connack')[0].properties?.reasonString, 'quota exceeded: too many connections, try again later')
    t.is(quiet.of('connack')[0]?.reasonCode, 0x97)
    t.is(quiet.of('connack')[0].properties?.reasonString, undefined)
    t.deepEqual(legacy.packets, [], '3.1.1 has no code for it: closed without CONNACK')
    t.is(await metric(b, 'fleetgate_mqtt_connack_refusals_total', { code: String(0x97), reason: 'max_connections' }), 2)
    t.is(await metric(b, 'fleetgate_mqtt_connack_refusals_total', { code: 'none', reason: 'max_connections' }), 1)
    // A place frees up: the next CONNECT is accepted.
    held[0]!.close()
    await waitFor(async () => {
      const c = raw(b.app.mqttPort)
      c.send(connectV5(d.id, d.secret))
      await waitFor(() => c.of('connack').length > 0 || c.closed, { what: 'CONNACK' })
      c.close()
      return c.of('connack')[0]?.reasonCode === 0 ? true : undefined
    }, { what: 'accepted once a connection closed', intervalMs: 100 })
    t.pass()
    held[1]!.close()
  })
})

test('DISCONNECT 0x8B to a connected v5 client when the broker shuts down', async (t) => {
  const b = await startTestBroker()
  try {
    const c = await connected(b, 'v5-shutdown')
    await waitFor(() => b.app.mqtt.connectedDeviceIds().includes('v5-shutdown'), { what: 'connected' })
    await b.close()
    await waitFor(() => c.closed, { what: 'closed' })
    t.is(c.of('disconnect').length, 1)
    t.is(c.of('disconnect')[0].reasonCode, 0x8B)
  } finally {
    await b.close(); await b.db.drop()
  }
})

test('DISCONNECT 0x97 when a v5 device stays over its publish budget past DEVICE_THROTTLE_DISCONNECT_MS', async (t) => {
  await withBroker({ DEVICE_PUBLISH_MESSAGES_PER_SECOND: 5, DEVICE_THROTTLE_DISCONNECT_MS: 300 }, async (b) => {
    const d = await b.app.devices.create({ id: 'v5-flooder' })
    const client = await connectDevice(b.url, d.id, d.secret, { protocolVersion: 5 })
    const disconnects: Array<{ reasonCode?: number, properties?: { reasonString?: string } }> = []
    client.on('disconnect', (p) => disconnects.push(p))
    const closed = new Promise<void>((resolve) => client.once('close', () => resolve()))
    for (let i = 0; i < 200; i++) client.publish(`devices/${d.id}/telemetry`, JSON.stringify({ ts: T0 + i }), { qos: 0 })
    await closed
    client.end(true)
    t.is(disconnects.length, 1)
    t.is(disconnects[0]?.reasonCode, 0x97)
    t.is(disconnects[0]?.properties?.reasonString, 'publish budget exceeded')
    t.is(await metric(b, 'fleetgate_mqtt_disconnects_total', { reason: 'rate_limited' }), 1)
  })
})

test('DISCONNECT 0x95 for a packet over MQTT_MAX_PACKET_BYTES after CONNACK, before its body arrives', async (t) => {
  const max = 64 * 1024
  await withBroker({ MQTT_MAX_PACKET_BYTES: max, TELEMETRY_MAX_BYTES: max }, async (b) => {
    const c = await connected(b, 'v5-big')
    t.is(c.of('connack')[0].properties?.maximumPacketSize, max)
    // A PUBLISH (QoS 1) declaring 2 MiB of remaining length, of which only 100 KiB are sent.
    const remaining = 2 * 1024 * 1024
    const header = [0x32]
    for (let n = remaining; ;) { let byte = n % 128; n = Math.floor(n / 128); if (n > 0) byte |= 128; header.push(byte); if (n === 0) break }
    c.write(Buffer.from(header))
    c.write(Buffer.alloc(100 * 1024))
    await waitFor(() => c.closed, { what: 'closed' })
    t.is(c.of('disconnect').length, 1)
    t.is(c.of('disconnect')[0].reasonCode, 0x95)
    t.is(await metric(b, 'fleetgate_mqtt_disconnects_total', { reason: 'packet_too_large' }), 1)
  })
})

test('DISCONNECT 0x8D when a v5 client lets its keepalive lapse', async (t) => {
  await withBroker({}, async (b) => {
    const t0 = Date.now()
    // Keep Alive 1 s, and nothing sent after CONNECT (no PINGREQ).
    const c = await connected(b, 'v5-silent', { keepalive: 1 })
    await waitFor(() => c.closed, { what: 'closed by keepalive timeout', timeoutMs: 5000 })
    const took = Date.now() - t0
    t.true(took >= 1000, `closed after ${took} ms, before the keepalive could lapse`)
    t.is(c.of('disconnect').length, 1)
    t.is(c.of('disconnect')[0].reasonCode, 0x8D)
    t.is(await metric(b, 'fleetgate_mqtt_disconnects_total', { reason: 'keepalive_timeout' }), 1)
  })
})

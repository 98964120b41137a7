// Issue 7 limits: each refusal or slow-down is counted.
import test from 'ava'
import type { MqttClient } from 'mqtt'
import { startTestBroker, connectDevice, connackCode } from '../../helpers/broker.js'
import { waitFor } from '../../helpers/wait.js'
import { T0 } from '../../helpers/time.js'
import { createConnection } from 'node:net'
import mqttPacket, { type Packet } from 'mqtt-packet'
import { createConnectGate, createAuthFailures, createPublishBudget } from '../../../broker/mqtt/connection-limits.js'

async function metric (b: Awaited<ReturnType<typeof startTestBroker>>, name: string, labels: Record<string, string> = {}) {
  const m = await b.app.metrics.registry.getSingleMetric(name)!.get()
  return m.values.filter((v) => Object.entries(labels).every(([k, x]) => v.labels[k] === x)).reduce((a, v) => a + v.value, 0)
}

test('maximum concurrent connections: the next one is closed at once and counted', async (t) => {
  const b = await startTestBroker({ MQTT_MAX_CONNECTIONS: 3 })
  const clients: MqttClient[] = []
  for (let i = 0; i < 3; i++) {
    const d = await b.app.devices.create({ id: `max-${i}` })
    clients.push(await connectDevice(b.url, d.id, d.secret))
  }
  const d = await b.app.devices.create({ id: 'max-extra' })
  t.is(await connackCode(b.url, { clientId: d.id, username: d.id, password: d.secret }), -1)
  t.true(await metric(b, 'fleetgate_mqtt_connack_refusals_total', { reason: 'max_connections' }) >= 1)
  await Promise.all(clients.map((c) => c.endAsync()))
  await b.close(); await b.db.drop()
})

test('connection rate limit: a storm waits its turn instead of failing; a full queue closes the excess', async (t) => {
  const b = await startTestBroker({ MQTT_CONNECT_RATE_PER_SECOND: 10, MQTT_CONNECT_QUEUE: 100 })
  const devs = await Promise.all(Array.from({ length: 25 }, (_, i) => b.app.devices.create({ id: `storm-${i}` })))
  const t0 = Date.now()
  const clients = await Promise.all(devs.map((d) => connectDevice(b.url, d.id, d.secret, { connectTimeout: 10_000 })))
  const took = Date.now() - t0
  t.true(clients.every((c) => c.connected))
  t.true(took >= 1000, `25 CONNECTs at 10/s (burst 10) took ${took} ms`)
  await Promise.all(clients.map((c) => c.endAsync()))
  await b.close(); await b.db.drop()

  const small = await startTestBroker({ MQTT_CONNECT_RATE_PER_SECOND: 1, MQTT_CONNECT_QUEUE: 1 })
  const codes = await Promise.all(Array.from({ length: 5 }, (_, i) => connackCode(small.url, { clientId: `q-${i}`, username: `q-${i}`, password: 'x', connectTimeout: 5000 })))
  t.true(codes.filter((c) => c === -1).length >= 2, `some closed: ${codes}`)
  t.true(await metric(small, 'fleetgate_mqtt_connack_refusals_total', { reason: 'connect_queue_full' }) >= 2)
  await small.close(); await small.db.drop()
})

test('repeated failed authentication from one address is answered more and more slowly', async (t) => {
  const b = await startTestBroker({ MQTT_AUTH_FAILURE_MAX_DELAY_MS: 10_000 })
  const d = await b.app.devices.create({ id: 'guessed' })
  const times: number[] = []
  for (let i = 0; i < 4; i++) {
    const t0 = Date.now()
    t.is(await connackCode(b.url, { clientId: d.id, username: d.id, password: `guess-${i}` }), 4)
    times.push(Date.now() - t0)
  }
  // Delays 0, 100, 200, 400 ms before the refusal.
  t.true(times[3]! >= 380, `fourth refusal after ${times[3]} ms`)
  t.true(times[3]! > times[1]!)
  const ok = await connectDevice(b.url, d.id, d.secret) // the right secret still works (after the pending delay)
  await ok.endAsync()
  await b.close(); await b.db.drop()
})

test('a device over its publish budget is slowed down, loses nothing, and is disconnected only if it persists', async (t) => {
  const b = await startTestBroker({ DEVICE_PUBLISH_MESSAGES_PER_SECOND: 20, DEVICE_THROTTLE_DISCONNECT_MS: 0 })
  const d = await b.app.devices.create({ id: 'chatty' })
  const c = await connectDevice(b.url, d.id, d.secret)
  const t0 = Date.now()
  await Promise.all(Array.from({ length: 60 }, (_, i) => c.publishAsync(`devices/${d.id}/telemetry`, JSON.stringify({ ts: T0 + i, i }), { qos: 1 })))
  const took = Date.now() - t0
  t.true(took >= 1500, `60 messages at 20/s (burst 20) took ${took} ms`)
  t.true(c.connected)
  const { rows } = await b.app.pool.query("SELECT count(*)::int AS n FROM telemetry WHERE device_id = 'chatty'")
  t.is(rows[0].n, 60)
  t.true(await metric(b, 'fleetgate_mqtt_publish_throttled_seconds_total') > 0)
  await c.endAsync()
  await b.close(); await b.db.drop()

  const strict = await startTestBroker({ DEVICE_PUBLISH_MESSAGES_PER_SECOND: 5, DEVICE_THROTTLE_DISCONNECT_MS: 300 })
  const s = await strict.app.devices.create({ id: 'flooder' })
  const f = await connectDevice(strict.url, s.id, s.secret)
  const closed = new Promise<void>((resolve) => f.once('close', () => resolve()))
  for (let i = 0; i < 200; i++) f.publish(`devices/${s.id}/telemetry`, JSON.stringify({ ts: T0 + i }), { qos: 0 })
  await closed
  await waitFor(async () => await metric(strict, 'fleetgate_mqtt_disconnects_total', { reason: 'rate_limited' }) === 1)
  t.pass()
  f.end(true)
  await strict.close(); await strict.db.drop()
})

test('a packet over MQTT_MAX_PACKET_BYTES closes the connection before its body is read, with or without CONNECT', async (t) => {
  const max = 64 * 1024
  const b = await startTestBroker({ MQTT_MAX_PACKET_BYTES: max, TELEMETRY_MAX_BYTES: max })
  const d = await b.app.devices.create({ id: 'big-1' })
  const ok = await b.app.devices.create({ id: 'big-ok' })
  const good = await connectDevice(b.url, ok.id, ok.secret)
  // Remaining length as MQTT's variable-length integer.
  const header = (type: number, length: number) => {
    const bytes = [type]
    do { let byte = length % 128; length = Math.floor(length / 128); if (length > 0) byte |= 128; bytes.push(byte) } while (length > 0)
    return Buffer.from(bytes)
  }
  const closedAfter = (chunks: Buffer[]) => new Promise<{ closed: boolean, sentBytes: number }>((resolve) => {
    const socket = createConnection(b.app.mqttPort, '127.0.0.1')
    let sentBytes = 0
    const timer = setTimeout(() => { socket.destroy(); resolve({ closed: false, sentBytes }) }, 3000)
    socket.on('error', () => {})
    socket.on('close', () => { clearTimeout(timer); resolve({ closed: true, sentBytes }) })
    socket.on('connect', () => { for (const c of chunks) { socket.write(c); sentBytes += c.length } })
  })
  // A CONNECT declaring 200 MB, followed by 10 KiB of it: closed at once.
  const hugeConnect = await closedAfter([header(0x10, 200 * 1024 * 1024), Buffer.alloc(10 * 1024)])
  t.true(hugeConnect.closed, 'an oversized CONNECT closes the connection')
  // An authenticated device declaring a 2 MiB PUBLISH, sending only 100 KiB of it.
  const connect = mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, clientId: d.id, username: d.id, password: Buffer.from(d.secret), keepalive: 30 } as Packet)
  const hugePublish = await closedAfter([connect, header(0x32, 2 * 1024 * 1024), Buffer.alloc(100 * 1024)])
  t.true(hugePublish.closed, 'an oversized PUBLISH closes the connection although its body never arrived')
  t.is(await metric(b, 'fleetgate_mqtt_oversized_packets_total'), 2)
  // Within the limit all is well, and the neighbour was never disturbed.
  await good.publishAsync('devices/big-ok/telemetry', JSON.stringify({ ts: T0, pad: 'x'.repeat(max - 1000) }), { qos: 1 })
  t.true(good.connected)
  await good.endAsync()
  await b.close(); await b.db.drop()
})

test('CONNECT deadline (slowloris): a connection that sends nothing, or half a CONNECT, is closed and counted', async (t) => {
  const b = await startTestBroker({ MQTT_CONNECT_TIMEOUT_MS: 300 })
  const closedWithin = (bytes: Buffer) => new Promise<number>((resolve) => {
    const t0 = Date.now()
    const socket = createConnection(b.app.mqttPort, '127.0.0.1')
    socket.on('error', () => {})
    socket.on('connect', () => { if (bytes.length > 0) socket.write(bytes) })
    socket.on('close', () => resolve(Date.now() - t0))
    setTimeout(() => socket.destroy(), 5000)
  })
  const silent = await closedWithin(Buffer.alloc(0))
  const half = await closedWithin(Buffer.from([0x10, 0x20, 0x00, 0x04]))
  t.true(silent < 2000, `silent connection closed after ${silent} ms`)
  t.true(half < 2000, `half a CONNECT closed after ${half} ms`)
  t.is(await metric(b, 'fleetgate_mqtt_connection_errors_total', { reason: 'connect_timeout' }), 2)
  await b.close(); await b.db.drop()
})

test('limit primitives: token bucket order, failure back-off and forgetting, budgets', (t) => {
  let now = 0
  const gate = createConnectGate({ ratePerSecond: 2, burst: 2, maxQueued: 1, now: () => now })
  const got: Array<boolean> = []
  for (let i = 0; i < 4; i++) gate.acquire((ok) => got.push(ok))
  t.deepEqual(got, [true, true, false]) // two tokens, one waits, one refused
  gate.close()
  t.deepEqual(got, [true, true, false, false])
  const f = createAuthFailures({ baseDelayMs: 100, maxDelayMs: 350, forgetAfterMs: 1000, maxTracked: 2, now: () => now })
  t.is(f.delayFor('a'), 0)
  f.failed('a'); f.failed('a'); f.failed('a')
  t.is(f.delayFor('a'), 350, 'capped')
  now = 5000
  t.is(f.delayFor('a'), 0, 'forgotten')
  f.failed('b'); f.failed('c'); f.failed('d')
  t.is(f.tracked, 2, 'bounded')
  const budget = createPublishBudget(10, 1_000_000, 0)
  for (let i = 0; i < 10; i++) t.is(budget.take(10, 0), 0)
  t.true(budget.take(10, 0) > 0)
  t.true(budget.overSince === 0 || budget.overSince >= 0)
})

// Server Keep Alive for v5 clients without breaking 3.1.1 ones
// (MQTT_SERVER_KEEPALIVE_SECONDS, broker/mqtt/server-keep-alive.ts), and the
// default expiry of 3.1.1 persistent sessions
// (MQTT_SESSION_EXPIRY_DEFAULT_SECONDS, broker/mqtt/session-expiry.ts), with
// real clients: raw v5/3.1.1 packets where the CONNACK must be read, mqtt.js
// otherwise.
import test from 'ava'
import mqtt from 'mqtt'
import type { Packet } from 'mqtt-packet'
import { startTestBroker, type TestBroker } from '../../helpers/broker.js'
import { waitFor } from '../../helpers/wait.js'
import { rawConnection } from '../../helpers/raw-mqtt.js'

let broker: TestBroker
test.before(async () => {
  broker = await startTestBroker({ MQTT_ALLOW_ANONYMOUS: true, MQTT_SERVER_KEEPALIVE_SECONDS: 2, MQTT_SESSION_EXPIRY_DEFAULT_SECONDS: 2 })
})
test.after.always(async () => { await broker?.close(); await broker?.db.drop() })

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

async function connack (version: 4 | 5, clientId: string, keepalive: number) {
  const c = rawConnection(broker.app.mqttPort, version)
  c.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: version, clientId, clean: true, keepalive } as Partial<Packet>)
  await waitFor(() => c.of('connack').length > 0 || c.closed, { what: 'CONNACK' })
  return { c, connack: c.of('connack')[0] }
}

test('Server Keep Alive: a v5 client asking for none or more is given MQTT_SERVER_KEEPALIVE_SECONDS in CONNACK and held to it (DISCONNECT 0x8D)', async (t) => {
  const { c, connack: none } = await connack(5, 'ska-none', 0)
  t.is(none.reasonCode, 0)
  t.is(none.properties?.serverKeepAlive, 2)
  const started = Date.now()
  await waitFor(() => c.closed, { what: 'closed for silence', timeoutMs: 12_000 })
  const took = Date.now() - started
  t.is(c.of('disconnect')[0]?.reasonCode, 0x8D)
  // 1.5 × 2 s; the upper bound leaves room for a loaded CI machine.
  t.true(took >= 2500 && took < 9000, `closed after ${took} ms (1.5 × 2 s)`)

  const { c: more, connack: longer } = await connack(5, 'ska-longer', 600)
  t.is(longer.properties?.serverKeepAlive, 2)
  more.close()
  const { c: within, connack: shorter } = await connack(5, 'ska-shorter', 1)
  t.is(shorter.properties?.serverKeepAlive, undefined, 'a keep alive within the limit is the client\'s own')
  within.close()
})

test('Server Keep Alive: mqtt.js (v5) asking for 600 s follows the 2 s it is given and stays connected by pinging', async (t) => {
  // (mqtt.js ignores a Server Keep Alive when it asked for keepalive 0,
  // against [MQTT-3.2.2-21]; such a client is disconnected, as above.)
  const client = await mqtt.connectAsync(broker.url, { protocolVersion: 5, clientId: 'ska-mqttjs', keepalive: 600, reconnectPeriod: 0 })
  t.is(client.keepalive, 2)
  await sleep(5000)
  t.true(client.connected, 'still connected past 1.5 × the Server Keep Alive')
  await client.endAsync()
})

test('Server Keep Alive leaves 3.1.1 alone: keepalive 0 is accepted (no return code 6) and not timed out', async (t) => {
  const { c, connack: ok } = await connack(4, 'ska-v311', 0)
  t.is(ok.returnCode, 0)
  await sleep(4000)
  t.false(c.closed, 'a 3.1.1 client without keep alive is not timed')
  c.close()
  // And the real client.
  const client = await mqtt.connectAsync(broker.url, { protocolVersion: 4, clientId: 'ska-v311-mqttjs', keepalive: 0, reconnectPeriod: 0 })
  t.true(client.connected)
  await client.endAsync()
})

test('a 3.1.1 persistent session ends MQTT_SESSION_EXPIRY_DEFAULT_SECONDS after its connection; a reconnect before that keeps it', async (t) => {
  const opts = { protocolVersion: 4 as const, clean: false, reconnectPeriod: 0, keepalive: 30 }
  const first = await mqtt.connectAsync(broker.url, { ...opts, clientId: 'legacy-expiry' })
  await first.subscribeAsync('plain/legacy', { qos: 1 })
  await first.endAsync()
  // Back at once (well within the 2 s, also on a loaded machine): the
  // session is there, and stays (the timer is cancelled).
  const soon = mqtt.connect(broker.url, { ...opts, clientId: 'legacy-expiry' })
  const present = await new Promise<{ sessionPresent: boolean }>((resolve, reject) => { soon.once('connect', resolve); soon.once('error', reject) })
  t.true(present.sessionPresent)
  await sleep(2500)
  t.true(soon.connected)
  // It queues while offline...
  await soon.endAsync()
  const pub = await mqtt.connectAsync(broker.url, { protocolVersion: 4, clientId: 'legacy-pub', reconnectPeriod: 0 })
  await pub.publishAsync('plain/legacy', 'queued', { qos: 1 })
  await pub.endAsync()
  // ...and is gone 2 s after the connection ended: no subscription, no queue.
  await sleep(3000)
  const got: string[] = []
  const late = mqtt.connect(broker.url, { ...opts, clientId: 'legacy-expiry' })
  late.on('message', (_topic, payload) => got.push(payload.toString()))
  const after = await new Promise<{ sessionPresent: boolean }>((resolve, reject) => { late.once('connect', resolve); late.once('error', reject) })
  t.false(after.sessionPresent)
  await sleep(300)
  t.deepEqual(got, [])
  await late.endAsync()
})

test('a v5 session is not expired by this default: it keeps its own Session Expiry Interval', async (t) => {
  const opts = { protocolVersion: 5 as const, clean: false, reconnectPeriod: 0, clientId: 'v5-own-expiry' }
  const first = await mqtt.connectAsync(broker.url, { ...opts, properties: { sessionExpiryInterval: 60 } })
  await first.subscribeAsync('plain/v5-own', { qos: 1 })
  await first.endAsync()
  await sleep(3000)
  const again = mqtt.connect(broker.url, { ...opts, properties: { sessionExpiryInterval: 60 } })
  const connack = await new Promise<{ sessionPresent: boolean }>((resolve, reject) => { again.once('connect', resolve); again.once('error', reject) })
  t.true(connack.sessionPresent)
  await again.endAsync()
})

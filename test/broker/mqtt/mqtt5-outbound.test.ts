// What the pinned aedes beta got wrong on the way out to MQTT 5 clients
// (issue 12), fixed by patches/aedes+2.0.0-beta.1.patch and
// broker/mqtt/will-message.ts, tested with real v5 clients: mqtt.js
// (protocolVersion 5) and, where packets must be counted or properties read
// byte-exactly, the raw client.
import test from 'ava'
import mqtt from 'mqtt'
import type { Packet } from 'mqtt-packet'
import { startTestBroker, connectDevice, api, type TestBroker } from '../../helpers/broker.js'
import { waitFor } from '../../helpers/wait.js'
import { rawConnection } from '../../helpers/raw-mqtt.js'

let broker: TestBroker
test.before(async () => { broker = await startTestBroker({ MQTT_ALLOW_ANONYMOUS: true }) })
test.after.always(async () => { await broker?.close(); await broker?.db.drop() })

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

async function device (id: string) {
  return (await api(broker.app, 'POST', '/v1/devices', { id })).body as { id: string, secret: string }
}

/** A raw v5 device connection (it acknowledges nothing by itself), subscribed to `filter` at QoS 1. */
async function rawDevice (id: string, secret: string, properties: Record<string, unknown>, filter: string) {
  const c = rawConnection(broker.app.mqttPort)
  c.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clientId: id, username: id, password: Buffer.from(secret), clean: true, keepalive: 30, properties } as Partial<Packet>)
  await waitFor(() => c.of('connack').length > 0, { what: 'CONNACK' })
  if (c.of('connack')[0].reasonCode !== 0) throw new Error(`CONNACK ${c.of('connack')[0].reasonCode}`)
  c.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: filter, qos: 1 }] } as Partial<Packet>)
  await waitFor(() => c.of('suback').length > 0, { what: 'SUBACK' })
  return c
}

const discarded = async (reason: string) => {
  const m = await broker.app.metrics.registry.getSingleMetric('fleetgate_mqtt_outbound_discarded_total')!.get()
  return m.values.find((v) => v.labels.reason === reason)?.value ?? 0
}

test('outbound Receive Maximum [MQTT-3.3.4-9]: a v5 device allowing 2 has at most 2 commands unacknowledged; the rest follow its PUBACKs, in order', async (t) => {
  const dev = await device('rm-out')
  const c = await rawDevice(dev.id, dev.secret, { receiveMaximum: 2 }, `devices/${dev.id}/commands/+`)
  const ids: string[] = []
  for (let i = 0; i < 5; i++) ids.push((await api(broker.app, 'POST', `/v1/devices/${dev.id}/commands`, { name: `c${i}` })).body.id as string)
  await waitFor(() => c.of('publish').length >= 2, { what: 'two commands' })
  await sleep(500)
  t.is(c.of('publish').length, 2, 'no third PUBLISH before a PUBACK')
  c.send({ cmd: 'puback', messageId: c.of('publish')[0].messageId, reasonCode: 0 } as Partial<Packet>)
  await waitFor(() => c.of('publish').length >= 3, { what: 'third command' })
  await sleep(300)
  t.is(c.of('publish').length, 3, 'one PUBACK frees one slot')
  for (const p of c.of('publish').slice(1)) c.send({ cmd: 'puback', messageId: p.messageId, reasonCode: 0 } as Partial<Packet>)
  await waitFor(() => c.of('publish').length >= 5, { what: 'all five' })
  for (const p of c.of('publish').slice(3)) c.send({ cmd: 'puback', messageId: p.messageId, reasonCode: 0 } as Partial<Packet>)
  t.deepEqual(c.of('publish').map((p) => String(p.topic).split('/').pop()), ids, 'each command once, in order')
  t.false(c.closed)
  c.close()
})

test('outbound Receive Maximum: a session replay waits for PUBACKs too (mqtt.js client allowing 1)', async (t) => {
  const sub = await mqtt.connectAsync(broker.url, { protocolVersion: 5, clientId: 'rm-replay', clean: false, properties: { sessionExpiryInterval: 300, receiveMaximum: 1 }, reconnectPeriod: 0 })
  await sub.subscribeAsync('plain/rm-replay', { qos: 1 })
  await sub.endAsync()
  const pub = await mqtt.connectAsync(broker.url, { protocolVersion: 5, clientId: 'rm-replay-pub', reconnectPeriod: 0 })
  for (let i = 0; i < 20; i++) await pub.publishAsync('plain/rm-replay', String(i), { qos: 1 })
  await pub.endAsync()
  // A raw client, to see that only one is ever unacknowledged.
  const c = rawConnection(broker.app.mqttPort)
  c.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clientId: 'rm-replay', clean: false, keepalive: 30, properties: { sessionExpiryInterval: 300, receiveMaximum: 1 } } as Partial<Packet>)
  await waitFor(() => c.of('publish').length >= 1, { what: 'first replayed' })
  t.true(c.of('connack')[0].sessionPresent)
  for (let n = 1; n <= 20; n++) {
    await sleep(n === 1 ? 300 : 0)
    t.is(c.of('publish').length, n, `message ${n}: one in flight at a time`)
    c.send({ cmd: 'puback', messageId: c.of('publish')[n - 1].messageId, reasonCode: 0 } as Partial<Packet>)
    if (n < 20) await waitFor(() => c.of('publish').length > n, { what: `message ${n + 1}` })
  }
  t.deepEqual(c.of('publish').map((p) => p.payload.toString()), Array.from({ length: 20 }, (_, i) => String(i)))
  c.close()
})

test("outbound Maximum Packet Size [MQTT-3.1.2-24]: a command larger than the device's maximum is not sent to it and counted; smaller ones are", async (t) => {
  const dev = await device('mps-out')
  const c = await rawDevice(dev.id, dev.secret, { maximumPacketSize: 512 }, `devices/${dev.id}/commands/+`)
  const before = await discarded('packet_too_large')
  const big = (await api(broker.app, 'POST', `/v1/devices/${dev.id}/commands`, { name: 'big', params: { blob: 'x'.repeat(1000) } })).body.id as string
  const small = (await api(broker.app, 'POST', `/v1/devices/${dev.id}/commands`, { name: 'small' })).body.id as string
  await waitFor(() => c.of('publish').length >= 1, { what: 'the small command' })
  await waitFor(async () => await discarded('packet_too_large') > before, { what: 'the discard counted' })
  await sleep(300)
  t.deepEqual(c.of('publish').map((p) => String(p.topic).split('/').pop()), [small])
  t.false(c.of('publish').some((p) => String(p.topic).endsWith(big)))
  t.false(c.closed, 'the connection stays')
  c.close()
})

test('outbound Maximum Packet Size: a real v5 client never sees a packet over its maximum (anonymous pub/sub, QoS 0 and 1)', async (t) => {
  const sub = await mqtt.connectAsync(broker.url, { protocolVersion: 5, clientId: 'mps-sub', properties: { maximumPacketSize: 200 }, reconnectPeriod: 0 })
  const got: string[] = []
  sub.on('message', (_topic, payload) => got.push(payload.toString()))
  await sub.subscribeAsync('plain/mps', { qos: 1 })
  const pub = await mqtt.connectAsync(broker.url, { protocolVersion: 5, clientId: 'mps-pub', reconnectPeriod: 0 })
  await pub.publishAsync('plain/mps', 'y'.repeat(300), { qos: 0 })
  await pub.publishAsync('plain/mps', 'z'.repeat(300), { qos: 1 })
  await pub.publishAsync('plain/mps', 'small', { qos: 1 })
  await waitFor(() => got.includes('small'), { what: 'small message' })
  t.deepEqual(got, ['small'])
  t.true(sub.connected)
  await Promise.all([sub.endAsync(), pub.endAsync()])
})

test('a v5 session resumed by a CONNECT without Session Expiry Interval gets its queued messages (CONNACK session present)', async (t) => {
  const opts = { protocolVersion: 5 as const, clientId: 'resume-no-expiry', reconnectPeriod: 0 }
  const first = await mqtt.connectAsync(broker.url, { ...opts, clean: false, properties: { sessionExpiryInterval: 300 } })
  await first.subscribeAsync('plain/resume', { qos: 1 })
  await first.endAsync()
  const pub = await mqtt.connectAsync(broker.url, { protocolVersion: 5, clientId: 'resume-pub', reconnectPeriod: 0 })
  for (const m of ['a', 'b', 'c']) await pub.publishAsync('plain/resume', m, { qos: 1 })
  await pub.endAsync()
  const got: string[] = []
  const again = mqtt.connect(broker.url, { ...opts, clean: false })
  again.on('message', (_topic, payload) => got.push(payload.toString()))
  const connack = await new Promise<{ sessionPresent: boolean }>((resolve, reject) => { again.once('connect', resolve); again.once('error', reject) })
  t.true(connack.sessionPresent)
  await waitFor(() => got.length >= 3, { what: 'the queued messages' })
  t.deepEqual(got, ['a', 'b', 'c'])
  await again.endAsync()
})

test('a v5 device resuming its session without Session Expiry Interval gets the commands and config queued while it was offline', async (t) => {
  const dev = await device('resume-dev')
  const opts = { protocolVersion: 5 as const, clean: false }
  const first = await connectDevice(broker.url, dev.id, dev.secret, { ...opts, properties: { sessionExpiryInterval: 300 } })
  await first.subscribeAsync([`devices/${dev.id}/commands/+`, `devices/${dev.id}/config`], { qos: 1 })
  await first.endAsync()
  const cmd = (await api(broker.app, 'POST', `/v1/devices/${dev.id}/commands`, { name: 'while-away' })).body.id as string
  await api(broker.app, 'PUT', `/v1/devices/${dev.id}/config`, { config: { v: 2 } })
  const got: string[] = []
  const again = await connectDevice(broker.url, dev.id, dev.secret, opts)
  again.on('message', (topic) => got.push(topic))
  await waitFor(() => got.length >= 2, { what: 'command and config' })
  t.true(got.includes(`devices/${dev.id}/commands/${cmd}`))
  t.true(got.includes(`devices/${dev.id}/config`))
  await again.endAsync()
})

test('the will PUBLISH carries no Will Delay Interval (a CONNECT-only property), the rest of its properties pass through', async (t) => {
  const watcher = rawConnection(broker.app.mqttPort)
  watcher.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clientId: 'will-watch', clean: true, keepalive: 30 } as Partial<Packet>)
  await waitFor(() => watcher.of('connack').length > 0, { what: 'CONNACK' })
  watcher.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'plain/will/#', qos: 1 }] } as Partial<Packet>)
  await waitFor(() => watcher.of('suback').length > 0, { what: 'SUBACK' })
  // And a real client, which must accept the packet.
  const real = await mqtt.connectAsync(broker.url, { protocolVersion: 5, clientId: 'will-real', reconnectPeriod: 0 })
  const realGot: Array<{ topic: string, properties?: Record<string, unknown> }> = []
  real.on('message', (topic, _p, packet) => realGot.push({ topic, properties: packet.properties as Record<string, unknown> }))
  await real.subscribeAsync('plain/will/#', { qos: 1 })
  for (const [name, delay] of [['delayed', 1], ['at-once', 0]] as const) {
    const dying = rawConnection(broker.app.mqttPort)
    dying.send({
      cmd: 'connect',
      protocolId: 'MQTT',
      protocolVersion: 5,
      clientId: `will-${name}`,
      clean: true,
      keepalive: 30,
      properties: { sessionExpiryInterval: 10 },
      will: { topic: `plain/will/${name}`, payload: Buffer.from('gone'), qos: 1, retain: false, properties: { willDelayInterval: delay, contentType: 'text/plain', userProperties: { why: 'test' } } }
    } as Partial<Packet>)
    await waitFor(() => dying.of('connack').length > 0, { what: 'CONNACK' })
    dying.close() // no DISCONNECT: the will is due
    const will = await waitFor(() => watcher.of('publish').find((p) => p.topic === `plain/will/${name}`), { what: `${name} will` })
    t.is(will.properties?.willDelayInterval, undefined, `${name}: no 0x18 on a PUBLISH`)
    t.is(will.properties?.contentType, 'text/plain')
    t.deepEqual(will.properties?.userProperties, { why: 'test' })
    const seen = await waitFor(() => realGot.find((g) => g.topic === `plain/will/${name}`), { what: `${name} will at mqtt.js` })
    t.is(seen.properties?.willDelayInterval, undefined)
  }
  t.true(real.connected)
  watcher.close()
  await real.endAsync()
})

test('a client that does not acknowledge cannot make the broker hold its traffic without bound: past 1000 waiting, messages are discarded and counted', async (t) => {
  const s = await mqtt.connectAsync(broker.url, { protocolVersion: 5, clientId: 'rm-stuck', clean: false, properties: { sessionExpiryInterval: 60 }, reconnectPeriod: 0 })
  await s.subscribeAsync('plain/rm-stuck', { qos: 1 })
  await s.endAsync()
  const pub = await mqtt.connectAsync(broker.url, { protocolVersion: 5, clientId: 'rm-stuck-pub', reconnectPeriod: 0 })
  await pub.publishAsync('plain/rm-stuck', 'queued', { qos: 1 })
  // Resumed allowing one in flight, and never acknowledging: the replay waits.
  const c = rawConnection(broker.app.mqttPort)
  c.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clientId: 'rm-stuck', clean: false, keepalive: 30, properties: { sessionExpiryInterval: 60, receiveMaximum: 1 } } as Partial<Packet>)
  await waitFor(() => c.of('publish').length > 0, { what: 'the queued message' })
  const before = await discarded('queue_full')
  for (let i = 0; i < 1100; i++) pub.publish('plain/rm-stuck', `live-${i}`, { qos: 1 })
  await waitFor(async () => await discarded('queue_full') - before >= 100, { what: '100 discards counted', timeoutMs: 20_000 })
  t.is(c.of('publish').length, 1, 'still one in flight')
  t.false(c.closed)
  c.close()
  await pub.endAsync()
})

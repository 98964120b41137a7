// MQTT 5 for devices (issue 12), with real v5 clients (mqtt.js,
// protocolVersion 5) and, where a reason code or property must be checked
// byte-exactly, raw packets (mqtt-packet, protocolVersion 5).
import test from 'ava'
import mqtt from 'mqtt'
import type { Packet } from 'mqtt-packet'
import { startTestBroker, connectDevice, api, type TestBroker } from '../../helpers/broker.js'
import { waitFor } from '../../helpers/wait.js'
import { rawConnection } from '../../helpers/raw-mqtt.js'

const T0 = new Date(Date.now() - 60_000).toISOString()
let broker: TestBroker
test.before(async () => { broker = await startTestBroker({ MQTT_ALLOW_ANONYMOUS: true }) })
test.after.always(async () => { await broker?.close(); await broker?.db.drop() })

const raw = rawConnection

const connectV5 = (id: string, secret?: string, extra: Record<string, unknown> = {}) =>
  ({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clientId: id, ...(secret !== undefined ? { username: id, password: Buffer.from(secret) } : {}), clean: true, keepalive: 30, ...extra }) as Partial<Packet>

async function device (id: string) {
  return (await api(broker.app, 'POST', '/v1/devices', { id })).body as { id: string, secret: string }
}

const rows = async (table: 'telemetry' | 'dead_letters', deviceId: string) =>
  (await broker.app.pool.query(`SELECT count(*)::int AS n FROM ${table} WHERE device_id = $1`, [deviceId])).rows[0].n as number

async function connackOf (extra: Record<string, unknown>, id: string, secret?: string) {
  const c = raw(broker.app.mqttPort)
  c.send(connectV5(id, secret, extra))
  await waitFor(() => c.of('connack').length > 0, { what: 'CONNACK' })
  const connack = c.of('connack')[0]
  c.close()
  return connack
}

test('CONNACK reason codes: 0x85 client id, 0x86 credentials, 0x87 disabled or no credentials', async (t) => {
  const dev = await device('v5-auth')
  t.is((await connackOf({}, dev.id, 'wrong-secret')).reasonCode, 0x86)
  t.is((await connackOf({}, 'v5-nobody', 'whatever')).reasonCode, 0x86, 'an unknown device looks like a wrong secret')
  t.is((await connackOf({ username: 'someone-else' }, dev.id, dev.secret)).reasonCode, 0x85)
  await api(broker.app, 'PATCH', `/v1/devices/${dev.id}`, { disabled: true })
  t.is((await connackOf({}, dev.id, dev.secret)).reasonCode, 0x87)
  // A real v5 client sees the same code.
  const err = await mqtt.connectAsync(broker.url, { protocolVersion: 5, clientId: dev.id, username: dev.id, password: 'nope', reconnectPeriod: 0 }).then(() => undefined, (e: { code?: number }) => e)
  t.is(err?.code, 0x86)
})

test('CONNACK refusals carry a fixed reason string (0x85, 0x86, 0x87) unless Request Problem Information = 0, the same for an unknown device as for a wrong secret', async (t) => {
  const dev = await device('v5-why')
  const quiet = { properties: { requestProblemInformation: false } }
  const wrong = await connackOf({}, dev.id, 'wrong-secret')
  const unknown = await connackOf({}, 'v5-why-nobody', 'whatever')
  t.is(wrong.reasonCode, 0x86)
  t.is(wrong.properties?.reasonString, 'bad user name or password')
  t.deepEqual(unknown.properties, wrong.properties, 'no oracle on device ids')
  t.is((await connackOf(quiet, dev.id, 'wrong-secret')).properties?.reasonString, undefined)
  const badId = await connackOf({ username: 'someone-else' }, dev.id, dev.secret)
  t.is(badId.reasonCode, 0x85)
  t.regex(badId.properties?.reasonString ?? '', /^client identifier not valid/)
  t.is((await connackOf({ ...quiet, username: 'someone-else' }, dev.id, dev.secret)).properties?.reasonString, undefined)
  await api(broker.app, 'PATCH', `/v1/devices/${dev.id}`, { disabled: true })
  const disabled = await connackOf({}, dev.id, dev.secret)
  t.is(disabled.reasonCode, 0x87)
  t.is(disabled.properties?.reasonString, 'not authorized')
  t.is((await connackOf(quiet, dev.id, dev.secret)).properties?.reasonString, undefined)
  // mqtt.js hands the reason string to the application.
  const err = await mqtt.connectAsync(broker.url, { protocolVersion: 5, clientId: dev.id, username: dev.id, password: 'nope', reconnectPeriod: 0 }).then(() => undefined, (e: Error & { code?: number }) => e)
  t.is(err?.code, 0x86)
})

test('CONNACK properties advertise the real limits', async (t) => {
  const dev = await device('v5-props')
  const connack = await connackOf({}, dev.id, dev.secret)
  t.is(connack.reasonCode, 0)
  t.like(connack.properties, {
    receiveMaximum: 1000,
    maximumPacketSize: 1024 * 1024,
    topicAliasMaximum: 64,
    sharedSubscriptionAvailable: false
  })
  t.is(connack.properties.sessionExpiryInterval, undefined, 'nothing to cap: no Session Expiry asked for')
  // A session that never expires is capped by MQTT_SESSION_EXPIRY_MAX_SECONDS, and the CONNACK says so [MQTT-3.2.2-3.2].
  const capped = await connackOf({ properties: { sessionExpiryInterval: 0xFFFFFFFF } }, dev.id, dev.secret)
  t.is(capped.properties.sessionExpiryInterval, 604_800)
})

test('telemetry PUBACK: 0x00 committed (short form), 0x99 dead-lettered with the stable reason, 0x87 not authorized and the connection stays open', async (t) => {
  const dev = await device('v5-puback')
  const c = raw(broker.app.mqttPort)
  c.send(connectV5(dev.id, dev.secret))
  await waitFor(() => c.of('connack').length > 0, { what: 'CONNACK' })
  c.send({ cmd: 'publish', topic: `devices/${dev.id}/telemetry`, payload: Buffer.from(JSON.stringify({ ts: T0, v: 1 })), qos: 1, messageId: 1 })
  await waitFor(() => c.of('puback').some((p) => p.messageId === 1), { what: 'PUBACK 1' })
  const ok = c.of('puback').find((p) => p.messageId === 1)
  t.is(ok.reasonCode ?? 0, 0)
  // Success without properties in its short form, as in 3.1.1: Reason Code
  // 0x00 and Property Length omitted [MQTT-3.4.2-1] (aedes' beta sent both).
  t.is(ok.length, 2, 'PUBACK 0x00 is 4 bytes: header, remaining length 2, packet id')
  t.is(await rows('telemetry', dev.id), 1, 'acknowledged = stored')

  c.send({ cmd: 'publish', topic: `devices/${dev.id}/telemetry`, payload: Buffer.from('{not json'), qos: 1, messageId: 2 })
  await waitFor(() => c.of('puback').some((p) => p.messageId === 2), { what: 'PUBACK 2' })
  const bad = c.of('puback').find((p) => p.messageId === 2)
  t.is(bad.reasonCode, 0x99)
  t.is(bad.properties?.reasonString, 'invalid_json')
  t.is(await rows('dead_letters', dev.id), 1, 'still recorded as a dead letter, before the PUBACK')

  c.send({ cmd: 'publish', topic: 'devices/someone-else/telemetry', payload: Buffer.from('{}'), qos: 1, messageId: 3 })
  await waitFor(() => c.of('puback').some((p) => p.messageId === 3), { what: 'PUBACK 3' })
  t.is(c.of('puback').find((p) => p.messageId === 3).reasonCode, 0x87)
  // Still connected: the next reading is stored and acknowledged.
  c.send({ cmd: 'publish', topic: `devices/${dev.id}/telemetry`, payload: Buffer.from(JSON.stringify({ ts: T0, v: 4 })), qos: 1, messageId: 4 })
  await waitFor(() => c.of('puback').some((p) => p.messageId === 4), { what: 'PUBACK 4' })
  t.false(c.closed)
  t.is(await rows('telemetry', dev.id), 2)
  c.close()
})

test('a reading sent through a topic alias is stored under its real topic', async (t) => {
  const dev = await device('v5-alias')
  const client = await connectDevice(broker.url, dev.id, dev.secret, { protocolVersion: 5 })
  await client.publishAsync(`devices/${dev.id}/telemetry`, JSON.stringify({ ts: T0, n: 1 }), { qos: 1, properties: { topicAlias: 3 } })
  await client.publishAsync('', JSON.stringify({ ts: T0, n: 2 }), { qos: 1, properties: { topicAlias: 3 } })
  t.is(await rows('telemetry', dev.id), 2)
  await client.endAsync()
})

test('commands carry Message Expiry Interval, Response Topic and Correlation Data; configs Content Type', async (t) => {
  const dev = await device('v5-cmd')
  const client = await connectDevice(broker.url, dev.id, dev.secret, { protocolVersion: 5 })
  const got: Array<{ topic: string, properties: Record<string, unknown> }> = []
  client.on('message', (topic, _payload, packet) => got.push({ topic, properties: (packet.properties ?? {}) as Record<string, unknown> }))
  await client.subscribeAsync([`devices/${dev.id}/config`, `devices/${dev.id}/commands/+`], { qos: 1 })
  await api(broker.app, 'PUT', `/v1/devices/${dev.id}/config`, { config: { a: 1 } })
  const cmd = (await api(broker.app, 'POST', `/v1/devices/${dev.id}/commands`, { name: 'reboot', ttlSeconds: 120 })).body as { id: string }
  await waitFor(() => got.length >= 2, { what: 'config and command' })
  const config = got.find((g) => g.topic.endsWith('/config'))!
  t.is(config.properties.contentType, 'application/json')
  const command = got.find((g) => g.topic.includes('/commands/'))!
  t.is(command.properties.responseTopic, `devices/${dev.id}/commands/${cmd.id}/result`)
  t.is(Buffer.from(command.properties.correlationData as Buffer).toString(), cmd.id)
  const expiry = command.properties.messageExpiryInterval as number
  t.true(expiry > 100 && expiry <= 120, `remaining TTL ${expiry}`)
  // A v5 device answers through the response topic alone.
  await client.publishAsync(command.properties.responseTopic as string, JSON.stringify({ status: 'succeeded' }), { qos: 1, properties: { correlationData: command.properties.correlationData as Buffer } })
  t.is((await api(broker.app, 'GET', `/v1/commands/${cmd.id}`)).body.status, 'succeeded')
  await client.endAsync()
})

test('broker DISCONNECT reason codes: 0x8E taken over, 0x98 disabled through the API', async (t) => {
  const dev = await device('v5-kick')
  const first = raw(broker.app.mqttPort)
  first.send(connectV5(dev.id, dev.secret))
  await waitFor(() => first.of('connack').length > 0, { what: 'CONNACK' })
  const second = raw(broker.app.mqttPort)
  second.send(connectV5(dev.id, dev.secret))
  await waitFor(() => first.closed, { what: 'first closed' })
  t.is(first.of('disconnect')[0]?.reasonCode, 0x8E)
  await waitFor(() => second.of('connack').length > 0, { what: 'second CONNACK' })
  await waitFor(async () => (await api(broker.app, 'GET', `/v1/devices/${dev.id}`)).body.online === true, { what: 'online' })
  await api(broker.app, 'PATCH', `/v1/devices/${dev.id}`, { disabled: true })
  await waitFor(() => second.closed, { what: 'second closed' })
  t.is(second.of('disconnect')[0]?.reasonCode, 0x98)
})

test('inbound Receive Maximum: past it a v5 client gets DISCONNECT 0x93, counted', async (t) => {
  const dev = await device('v5-window')
  const c = raw(broker.app.mqttPort)
  c.send(connectV5(dev.id, dev.secret))
  await waitFor(() => c.of('connack').length > 0, { what: 'CONNACK' })
  // QoS 2 without PUBREL: each stays in flight.
  for (let id = 1; id <= 1001; id++) c.send({ cmd: 'publish', topic: `devices/${dev.id}/telemetry`, payload: Buffer.from(JSON.stringify({ ts: T0, id })), qos: 2, messageId: id })
  await waitFor(() => c.closed, { what: 'closed', timeoutMs: 20_000 })
  t.is(c.of('disconnect')[0]?.reasonCode, 0x93)
  const m = await broker.app.metrics.registry.getSingleMetric('fleetgate_mqtt_disconnects_total')!.get()
  t.true(m.values.some((v) => v.labels.reason === 'receive_maximum_exceeded' && v.value >= 1))
})

// ---- the beta's own defects (issue 12) ----

test('QoS 2 state does not survive a clean reconnect (3.1.1): a reused packet id is delivered', async (t) => {
  const sub = await mqtt.connectAsync(broker.url, { clientId: 'q2-sub', reconnectPeriod: 0 })
  const got: string[] = []
  sub.on('message', (_topic, payload) => got.push(payload.toString()))
  await sub.subscribeAsync('plain/q2', { qos: 2 })
  const first = raw(broker.app.mqttPort, 4)
  first.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId: 'q2-pub', clean: true, keepalive: 30 })
  await waitFor(() => first.of('connack').length > 0, { what: 'CONNACK' })
  first.send({ cmd: 'publish', topic: 'plain/q2', payload: Buffer.from('one'), qos: 2, messageId: 7 })
  await waitFor(() => first.of('pubrec').length > 0, { what: 'PUBREC' })
  first.close() // never sends PUBREL
  await waitFor(() => got.includes('one'), { what: 'first message' })
  const again = raw(broker.app.mqttPort, 4)
  again.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId: 'q2-pub', clean: true, keepalive: 30 })
  await waitFor(() => again.of('connack').length > 0, { what: 'CONNACK again' })
  again.send({ cmd: 'publish', topic: 'plain/q2', payload: Buffer.from('two'), qos: 2, messageId: 7 })
  await waitFor(() => again.of('pubrec').length > 0, { what: 'PUBREC again' })
  again.send({ cmd: 'pubrel', messageId: 7 })
  await waitFor(() => got.includes('two'), { what: 'the second message, same packet id, new clean session' })
  t.deepEqual(got, ['one', 'two'])
  again.close()
  await sub.endAsync()
})

test('a bad packet between CONNACK and the end of the session replay gets its reason-coded DISCONNECT (0x94 bad topic alias, 0x95 too large), not a bare close', async (t) => {
  const mqttPacket = (await import('mqtt-packet')).default
  const badAlias = mqttPacket.generate({ cmd: 'publish', topic: '', payload: Buffer.from('{}'), qos: 0, retain: false, dup: false, properties: { topicAlias: 65 } } as Packet, { protocolVersion: 5 })
  // A QoS 1 PUBLISH declaring 2 MiB (MQTT_MAX_PACKET_BYTES is 1 MiB), its body never sent.
  const tooLarge = Buffer.from([0x32, 0x80, 0x80, 0x80, 0x01])
  const resume = { cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clientId: 'early-bad', clean: false, keepalive: 30, properties: { sessionExpiryInterval: 60, receiveMaximum: 1 } } as Partial<Packet>
  for (const [bad, code] of [[badAlias, 0x94], [tooLarge, 0x95]] as const) {
    for (let i = 0; i < 5; i++) {
      // A session with messages queued; resumed allowing one in flight, its
      // replay waits for a PUBACK: aedes has written CONNACK but does not
      // count the connection as connected yet.
      const s = await mqtt.connectAsync(broker.url, { protocolVersion: 5, clientId: 'early-bad', clean: false, properties: { sessionExpiryInterval: 60 }, reconnectPeriod: 0 })
      await s.subscribeAsync('plain/early-bad', { qos: 1 })
      await s.endAsync()
      const pub = await mqtt.connectAsync(broker.url, { protocolVersion: 5, clientId: 'early-bad-pub', reconnectPeriod: 0 })
      for (const m of ['1', '2']) await pub.publishAsync('plain/early-bad', m, { qos: 1 })
      await pub.endAsync()
      const c = raw(broker.app.mqttPort)
      c.send(resume)
      await waitFor(() => c.of('publish').length > 0, { what: 'first replayed message' })
      t.true(c.of('connack')[0]?.sessionPresent)
      c.write(bad)
      await waitFor(() => c.closed, { what: 'closed' })
      t.is(c.of('disconnect')[0]?.reasonCode, code, `try ${i}: DISCONNECT 0x${code.toString(16)}`)
    }
  }
})

test('client ids and filters named like Object.prototype members are ordinary (GHSA-52qw-whmv-87c5, missing from the beta)', async (t) => {
  const a = await mqtt.connectAsync(broker.url, { clientId: 'constructor', reconnectPeriod: 0 })
  const got: string[] = []
  a.on('message', (topic) => got.push(topic))
  // One filter per SUBSCRIBE: the beta's _dedupe of a multi-filter SUBSCRIBE
  // still keys a plain object (a '__proto__' filter among others closes that
  // connection only; README, MQTT 5 support).
  for (const f of ['__proto__', 'constructor', 'toString']) await a.subscribeAsync(f, { qos: 0 })
  await a.publishAsync('toString', 'x', { qos: 0 })
  await waitFor(() => got.includes('toString'), { what: 'own message' })
  // A second connection with the same id takes over (it used to throw).
  let closed = false
  a.on('close', () => { closed = true })
  const b = await mqtt.connectAsync(broker.url, { clientId: 'constructor', reconnectPeriod: 0 })
  await waitFor(() => closed, { what: 'take-over' })
  t.true(b.connected)
  await b.endAsync()
  a.end(true)
})

// No device can stop the broker (issue 11): packets that break an MQTT rule
// close their own connection (counted by rule), an exception in any hook
// closes only that connection, and QoS 2 stores a message once. Raw MQTT
// over real TCP where a client library would refuse to send the packet.
import test from 'ava'
import { connect } from 'node:net'
import mqtt from 'mqtt'
import mqttPacket, { type Packet } from 'mqtt-packet'
import { startTestBroker, connectDevice, type TestBroker } from '../../helpers/broker.js'
import { waitFor } from '../../helpers/wait.js'
import { T0 } from '../../helpers/time.js'

let broker: TestBroker
let anon: TestBroker
test.before(async () => {
  broker = await startTestBroker()
  anon = await startTestBroker({ MQTT_ALLOW_ANONYMOUS: true })
})
test.after.always(async () => {
  await broker?.close(); await broker?.db.drop()
  await anon?.close(); await anon?.db.drop()
})

interface Exchange { packets: Packet[], closed: boolean }

/**
 * Opens a raw connection, writes each step's bytes once the previous step's
 * expected packet count arrived, and returns what the broker sent and
 * whether it closed the connection (as opposed to the deadline passing).
 */
async function exchange (port: number, steps: Array<{ send: Array<Partial<Packet> | Buffer>, expect?: number }>, timeoutMs = 1500): Promise<Exchange> {
  const socket = connect(port, '127.0.0.1')
  const parser = mqttPacket.parser({ protocolVersion: 4 })
  const packets: Packet[] = []
  let closed = false
  let step = 0
  const bytes = (p: Partial<Packet> | Buffer) => Buffer.isBuffer(p) ? p : mqttPacket.generate(p as Packet)
  const total = steps.reduce((a, x) => a + (x.expect ?? 0), 0)
  const next = () => {
    // Every step sent and its last answer in: done (the last step with no
    // expected answer waits for the close or the deadline).
    if (step === steps.length && steps.at(-1)?.expect !== undefined && packets.length >= total) { finish(); return }
    while (step < steps.length) {
      const s = steps[step]!
      const needed = steps.slice(0, step).reduce((a, x) => a + (x.expect ?? 0), 0)
      if (packets.length < needed) return
      for (const p of s.send) socket.write(bytes(p))
      step++
    }
  }
  let finish = () => {}
  return await new Promise((resolve) => {
    finish = () => { clearTimeout(timer); socket.destroy(); resolve({ packets, closed }) }
    const timer = setTimeout(finish, timeoutMs)
    parser.on('packet', (p) => { packets.push(p); next() })
    socket.on('data', (d) => parser.parse(d))
    socket.on('close', () => { closed = true; finish() })
    socket.on('error', () => {})
    socket.on('connect', next)
  })
}

async function counter (b: TestBroker, name: string, labels: Record<string, string> = {}): Promise<number> {
  const m = await b.app.metrics.registry.getSingleMetric(name)!.get()
  return m.values.filter((v) => Object.entries(labels).every(([k, val]) => v.labels[k] === val)).reduce((a, v) => a + v.value, 0)
}

const storedRows = async (b: TestBroker, deviceId: string) =>
  (await b.app.pool.query('SELECT count(*)::int AS n FROM telemetry WHERE device_id = $1', [deviceId])).rows[0].n as number

function connectPacket (id: string, secret: string, extra: Record<string, unknown> = {}): Partial<Packet> {
  return { cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId: id, username: id, password: Buffer.from(secret), clean: true, keepalive: 30, ...extra } as Partial<Packet>
}

test('a CONNECT whose will has QoS 3 is refused by closing the connection; the process and other devices carry on [MQTT-3.1.2-14]', async (t) => {
  const dev = await broker.app.devices.create({ id: 'will-qos3' })
  const bystander = await broker.app.devices.create({ id: 'will-bystander' })
  const other = await connectDevice(broker.url, bystander.id, bystander.secret)
  const before = await counter(broker, 'fleetgate_mqtt_protocol_violations_total', { rule: 'will_qos_invalid' })
  const r = await exchange(broker.app.mqttPort, [{
    send: [connectPacket(dev.id, dev.secret, { will: { topic: `devices/${dev.id}/telemetry`, payload: Buffer.from(JSON.stringify({ ts: T0, will: true })), qos: 3, retain: false } })]
  }])
  t.true(r.closed)
  t.deepEqual(r.packets, [], 'no CONNACK')
  t.is(await counter(broker, 'fleetgate_mqtt_protocol_violations_total', { rule: 'will_qos_invalid' }), before + 1)
  // The bystander's connection survived and its publishes are still stored.
  await other.publishAsync(`devices/${bystander.id}/telemetry`, JSON.stringify({ ts: T0, v: 1 }), { qos: 1 })
  t.true(other.connected)
  t.is(await storedRows(broker, dev.id), 0, 'the will was never stored')
  await other.endAsync()
})

test('a CONNECT whose will topic is not well-formed UTF-8 is refused by closing the connection [MQTT-1.5.3-1]', async (t) => {
  const dev = await broker.app.devices.create({ id: 'will-utf8' })
  const good = mqttPacket.generate(connectPacket(dev.id, dev.secret, { will: { topic: `devices/${dev.id}/telemetry/xx`, payload: Buffer.from('{}'), qos: 1, retain: false } }) as Packet)
  // The will topic's last two bytes ("xx") become an ill-formed sequence.
  const at = good.indexOf(Buffer.from('/xx'))
  good[at + 1] = 0xff; good[at + 2] = 0xfe
  const r = await exchange(broker.app.mqttPort, [{ send: [good] }])
  t.true(r.closed)
  t.deepEqual(r.packets, [], 'no CONNACK')
})

test('anonymous mode: a client id that is not well-formed UTF-8 is refused', async (t) => {
  const r = await exchange(anon.app.mqttPort, [{ send: [Buffer.from('101200044d5154540400ffff000672313538c328', 'hex')] }])
  t.true(r.closed)
  t.deepEqual(r.packets, [])
})

for (const level of [0, 6]) {
  test(`a CONNECT with protocol level ${level} gets CONNACK 0x01, then the close [MQTT-3.1.2-2]`, async (t) => {
    const connect = Buffer.from('101400044d51545400' + '00ffff0008667a2d7235362d61', 'hex')
    connect[8] = level
    const r = await exchange(broker.app.mqttPort, [{ send: [connect] }])
    t.deepEqual(r.packets.map((p) => [p.cmd, (p as { returnCode?: number }).returnCode]), [['connack', 1]])
    t.true(r.closed)
  })
}

test('anonymous mode: a retained will with QoS 3 is refused; subscribers of its topic keep their connection', async (t) => {
  const sub = await mqtt.connectAsync(`mqtt://127.0.0.1:${anon.app.mqttPort}`, { clientId: 'anon-sub', reconnectPeriod: 0 })
  await sub.subscribeAsync('lab/will', { qos: 1 })
  const r = await exchange(anon.app.mqttPort, [{
    send: [{ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId: 'anon-will', clean: true, keepalive: 30, will: { topic: 'lab/will', payload: Buffer.from('gone'), qos: 3 as 0, retain: true } }]
  }])
  t.true(r.closed)
  t.deepEqual(r.packets, [])
  // A later subscriber gets no broken retained message and stays connected too.
  const late = await mqtt.connectAsync(`mqtt://127.0.0.1:${anon.app.mqttPort}`, { clientId: 'anon-late', reconnectPeriod: 0 })
  await late.subscribeAsync('lab/will', { qos: 1 })
  await sub.publishAsync('lab/ping', 'x', { qos: 1 })
  t.true(sub.connected)
  t.true(late.connected)
  await sub.endAsync(); await late.endAsync()
})

for (const [name, bad, rule] of [
  ['QoS 1 PUBLISH with packet id 0 [MQTT-2.3.1-1]', (id: string) => ({ cmd: 'publish', topic: `devices/${id}/telemetry`, qos: 1, messageId: 0, payload: Buffer.from(JSON.stringify({ ts: T0, zero: 1 })) }), 'packet_id_zero'],
  ['QoS 2 PUBLISH with packet id 0 [MQTT-2.3.1-1]', (id: string) => ({ cmd: 'publish', topic: `devices/${id}/telemetry`, qos: 2, messageId: 0, payload: Buffer.from(JSON.stringify({ ts: T0, zero: 2 })) }), 'packet_id_zero'],
  ['SUBSCRIBE with packet id 0', (id: string) => ({ cmd: 'subscribe', messageId: 0, subscriptions: [{ topic: `devices/${id}/config`, qos: 1 }] }), 'packet_id_zero'],
  ['UNSUBSCRIBE with no topic filter [MQTT-3.10.3-2]', () => Buffer.from([0xa2, 0x02, 0x00, 0x05]), 'unsubscribe_empty'],
  ['UNSUBSCRIBE with packet id 0', (id: string) => ({ cmd: 'unsubscribe', messageId: 0, unsubscriptions: [`devices/${id}/config`] }), 'packet_id_zero'],
  ['SUBSCRIBE with no topic filter [MQTT-3.8.3-3]', () => Buffer.from([0x82, 0x02, 0x00, 0x05]), 'subscribe_empty'],
  ['PUBREL with packet id 0', () => Buffer.from([0x62, 0x02, 0x00, 0x00]), 'packet_id_zero'],
  ['QoS 0 PUBLISH with DUP set [MQTT-3.3.1-2]', (id: string) => { const b = mqttPacket.generate({ cmd: 'publish', topic: `devices/${id}/telemetry`, qos: 0, dup: false, retain: false, payload: Buffer.from('{"v":1}') } as Packet); b[0] = b[0]! | 0x08; return b }, 'dup_qos0'],
  ['PUBLISH whose topic is not well-formed UTF-8 [MQTT-1.5.3-1]', (id: string) => { const topic = Buffer.concat([Buffer.from(`devices/${id}/telemetry`), Buffer.from([0xff, 0xfe])]); const payload = Buffer.from('{"v":1}'); return Buffer.concat([Buffer.from([0x30, 2 + topic.length + payload.length, 0, topic.length]), topic, payload]) }, 'invalid_utf8'],
  ['PUBLISH whose topic holds U+0000 [MQTT-4.7.3-2]', (id: string) => ({ cmd: 'publish', topic: `devices/${id}/telemetry\u0000x`, qos: 1, messageId: 9, payload: Buffer.from('{}') }), 'topic_nul']
] as const) {
  // Serial: each checks its rule's counter moved by exactly one.
  test.serial(`${name}: the connection is closed unanswered and counted; nothing is stored`, async (t) => {
    const id = `strict-${name.replace(/[^A-Za-z0-9]+/g, '-').slice(0, 60)}`
    const dev = await broker.app.devices.create({ id })
    const before = await counter(broker, 'fleetgate_mqtt_protocol_violations_total', { rule })
    const r = await exchange(broker.app.mqttPort, [
      { send: [connectPacket(dev.id, dev.secret)], expect: 1 },
      { send: [bad(dev.id) as Partial<Packet> | Buffer] }
    ])
    t.is(r.packets[0]?.cmd, 'connack')
    t.deepEqual(r.packets.slice(1).map((p) => p.cmd), [], 'no answer to the bad packet')
    t.true(r.closed, 'connection closed')
    t.is(await counter(broker, 'fleetgate_mqtt_protocol_violations_total', { rule }), before + 1)
    t.is(await storedRows(broker, dev.id), 0)
  })
}

test.serial('QoS 2: a PUBLISH re-sent with DUP before PUBREL is answered with PUBREC and stored once [MQTT-4.3.3]', async (t) => {
  const dev = await broker.app.devices.create({ id: 'qos2-dup' })
  // No ts: the reading's identity is its receive time, so only the broker's
  // exactly-once handling keeps the copy out.
  const publish = (dup: boolean) => ({ cmd: 'publish', topic: `devices/${dev.id}/telemetry`, qos: 2, messageId: 5, dup, retain: false, payload: Buffer.from('{"v":1}') }) as Partial<Packet>
  const before = await counter(broker, 'fleetgate_mqtt_qos2_duplicates_total')
  const r = await exchange(broker.app.mqttPort, [
    { send: [connectPacket(dev.id, dev.secret)], expect: 1 },
    { send: [publish(false)], expect: 1 },
    { send: [publish(true)], expect: 1 },
    // Re-sent twice more at once, before the broker answered either.
    { send: [publish(true), publish(true)], expect: 2 },
    { send: [{ cmd: 'pubrel', messageId: 5 }], expect: 1 }
  ], 3000)
  t.deepEqual(r.packets.map((p) => p.cmd), ['connack', 'pubrec', 'pubrec', 'pubrec', 'pubrec', 'pubcomp'])
  t.is(await storedRows(broker, dev.id), 1)
  t.is(await counter(broker, 'fleetgate_mqtt_qos2_duplicates_total'), before + 3)
  // After PUBREL the id is free again: a new message with it is stored.
  const again = await exchange(broker.app.mqttPort, [
    { send: [connectPacket(dev.id, dev.secret)], expect: 1 },
    { send: [publish(false)], expect: 1 }
  ])
  t.is(again.packets[1]?.cmd, 'pubrec')
  t.is(await storedRows(broker, dev.id), 2)
})

test.serial('QoS 2: the original and its DUP in one socket read are stored once', async (t) => {
  const dev = await broker.app.devices.create({ id: 'qos2-burst' })
  const publish = (dup: boolean) => mqttPacket.generate({ cmd: 'publish', topic: `devices/${dev.id}/telemetry`, qos: 2, messageId: 7, dup, retain: false, payload: Buffer.from('{"v":2}') } as Packet)
  const r = await exchange(broker.app.mqttPort, [
    { send: [connectPacket(dev.id, dev.secret)], expect: 1 },
    { send: [Buffer.concat([publish(false), publish(true)])], expect: 2 },
    { send: [{ cmd: 'pubrel', messageId: 7 }], expect: 1 }
  ], 3000)
  t.deepEqual(r.packets.map((p) => p.cmd), ['connack', 'pubrec', 'pubrec', 'pubcomp'])
  t.is(await storedRows(broker, dev.id), 1)
})

// Mocks only to force what cannot happen for real on demand: a dependency
// that throws inside a hook.
for (const [hook, when, inject] of [
  ['authorizePublish', 'a publish', (b: TestBroker) => { const orig = b.app.presence.seen; b.app.presence.seen = () => { throw new Error('injected failure') }; return () => { b.app.presence.seen = orig } }],
  ['client', 'a connection is accepted', (b: TestBroker) => { const orig = b.app.presence.connected; b.app.presence.connected = () => { throw new Error('injected failure') }; return () => { b.app.presence.connected = orig } }],
  ['ingest', 'a batch is acknowledged', (b: TestBroker) => { const orig = b.app.metrics.pubackLatency.observe; b.app.metrics.pubackLatency.observe = () => { throw new Error('injected failure') }; return () => { b.app.metrics.pubackLatency.observe = orig } }]
] as const) {
  test.serial(`an exception in the ${hook} hook (when ${when}) closes that connection only, counted and logged`, async (t) => {
    const victim = await broker.app.devices.create({ id: `hook-${hook}` })
    const bystander = await broker.app.devices.create({ id: `hook-${hook}-ok` })
    const ok = await connectDevice(broker.url, bystander.id, bystander.secret)
    const before = await counter(broker, 'fleetgate_mqtt_hook_errors_total', { hook })
    const closedBefore = await counter(broker, 'fleetgate_mqtt_disconnects_total', { reason: 'internal_error' })
    const restore = inject(broker)
    let closed = false
    try {
      const c = mqtt.connect(broker.url, { clientId: victim.id, username: victim.id, password: victim.secret, reconnectPeriod: 0, connectTimeout: 3000 })
      c.on('error', () => {})
      c.on('close', () => { closed = true })
      c.on('connect', () => { c.publish(`devices/${victim.id}/telemetry`, JSON.stringify({ ts: T0, v: 1 }), { qos: 1 }) })
      await waitFor(() => closed, { what: 'victim connection closed' })
      c.end(true)
    } finally {
      restore()
    }
    t.is(await counter(broker, 'fleetgate_mqtt_hook_errors_total', { hook }), before + 1)
    t.is(await counter(broker, 'fleetgate_mqtt_disconnects_total', { reason: 'internal_error' }), closedBefore + 1)
    // The process is up and the bystander is unaffected.
    await ok.publishAsync(`devices/${bystander.id}/telemetry`, JSON.stringify({ ts: T0, v: 2 }), { qos: 1 })
    t.is(await storedRows(broker, bystander.id), 1)
    t.true(ok.connected)
    await ok.endAsync()
  })
}

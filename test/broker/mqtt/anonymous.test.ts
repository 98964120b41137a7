// MQTT_ALLOW_ANONYMOUS=true: a standard MQTT 3.1.1 broker outside devices/.
import test from 'ava'
import mqtt from 'mqtt'
import { startTestBroker, connackCode, type TestBroker } from '../../helpers/broker.js'
import { waitFor } from '../../helpers/wait.js'

let broker: TestBroker
test.before(async () => { broker = await startTestBroker({ MQTT_ALLOW_ANONYMOUS: true }) })
test.after.always(async () => { await broker?.close(); await broker?.db.drop() })

const open = (opts: mqtt.IClientOptions = {}) => mqtt.connectAsync(broker.url, { reconnectPeriod: 0, ...opts })

function nextMessage (client: mqtt.MqttClient): Promise<{ topic: string, payload: string, packet: mqtt.IPublishPacket }> {
  return new Promise((resolve) => client.once('message', (topic, payload, packet) => resolve({ topic, payload: payload.toString(), packet })))
}

test('plain pub/sub at QoS 0, 1 and 2', async (t) => {
  const sub = await open({ clientId: 'anon-sub' })
  const pub = await open({ clientId: 'anon-pub' })
  await sub.subscribeAsync('plant/+/temp', { qos: 2 })
  for (const qos of [0, 1, 2] as const) {
    const got = nextMessage(sub)
    await pub.publishAsync('plant/a/temp', `q${qos}`, { qos })
    const m = await got
    t.is(m.payload, `q${qos}`)
    t.is(m.packet.qos, qos)
  }
  await sub.endAsync(); await pub.endAsync()
})

test('retained messages reach later subscribers', async (t) => {
  const pub = await open()
  await pub.publishAsync('retained/x', 'kept', { qos: 1, retain: true })
  const sub = await open()
  const got = nextMessage(sub)
  await sub.subscribeAsync('retained/x', { qos: 1 })
  const m = await got
  t.is(m.payload, 'kept')
  t.true(m.packet.retain)
  await sub.endAsync(); await pub.endAsync()
})

test('a will is published when a client disappears', async (t) => {
  const watcher = await open()
  await watcher.subscribeAsync('wills/#', { qos: 1 })
  const got = nextMessage(watcher)
  const dying = await open({ clientId: 'anon-dying', will: { topic: 'wills/anon-dying', payload: Buffer.from('gone'), qos: 1, retain: false } })
  ;(dying as unknown as { stream: { destroy (): void } }).stream.destroy() // no DISCONNECT: the will fires
  t.is((await got).payload, 'gone')
  await watcher.endAsync()
})

test('a persistent session keeps subscriptions and queues QoS 1 while offline', async (t) => {
  const first = await open({ clientId: 'anon-persist', clean: false })
  await first.subscribeAsync('queue/#', { qos: 1 })
  await first.endAsync()
  const pub = await open()
  await pub.publishAsync('queue/1', 'while-offline', { qos: 1 })
  await pub.endAsync()
  const second = mqtt.connect(broker.url, { clientId: 'anon-persist', clean: false, reconnectPeriod: 0 })
  const [connack, message] = await Promise.all([
    new Promise<mqtt.IConnackPacket>((resolve) => second.once('connect', resolve)),
    nextMessage(second)
  ])
  t.true(connack.sessionPresent)
  t.is(message.payload, 'while-offline')
  await second.endAsync()
})

test('an empty client id with a clean session gets an id assigned [MQTT-3.1.3-6]', async (t) => {
  const c = await open({ clientId: '', clean: true })
  t.true(c.connected)
  await c.endAsync()
})

test('anonymous clients stay out of devices/: publish closes, subscribe gets 0x80, # does not deliver device traffic', async (t) => {
  const dev = await broker.app.devices.create({ id: 'anon-dev' })
  const spy = await open()
  const codes = await spy.subscribeAsync(['devices/anon-dev/telemetry', '#'], { qos: 1 })
    .then((g) => g.map((x) => x.qos), (err: { packet?: { granted: number[] } }) => err.packet!.granted)
  t.deepEqual(codes, [128, 1])
  const seen: string[] = []
  spy.on('message', (topic) => seen.push(topic))
  const device = await mqtt.connectAsync(broker.url, { clientId: dev.id, username: dev.id, password: dev.secret, reconnectPeriod: 0 })
  await device.publishAsync('devices/anon-dev/telemetry', '{"v":1}', { qos: 1 })
  const pub = await open()
  await pub.publishAsync('marker', 'm', { qos: 1 })
  await waitFor(() => seen.includes('marker'), { what: 'marker' })
  t.deepEqual(seen.filter((topic) => topic.startsWith('devices/')), [], 'no device traffic reaches an anonymous subscriber')

  const intruder = await open()
  const closed = new Promise<void>((resolve) => intruder.once('close', () => resolve()))
  intruder.publish('devices/anon-dev/telemetry', '{"v":2}', { qos: 1 })
  await closed
  await Promise.all([spy.endAsync(), device.endAsync(), pub.endAsync()])
  intruder.end(true)
})

test("an anonymous client cannot take a device's client id", async (t) => {
  await broker.app.devices.create({ id: 'anon-owned' })
  t.is(await connackCode(broker.url, { clientId: 'anon-owned' }), 2)
})

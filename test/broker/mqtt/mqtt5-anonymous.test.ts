// Anonymous development mode as a standard MQTT 5 broker (issue 12): what
// the README's "MQTT 5 support" table says about it, checked with real v5
// clients (mqtt.js protocolVersion 5; the raw client where a packet's exact
// properties matter).
import test from 'ava'
import mqtt, { type MqttClient, type IClientOptions } from 'mqtt'
import type { Packet } from 'mqtt-packet'
import { startTestBroker, type TestBroker } from '../../helpers/broker.js'
import { waitFor } from '../../helpers/wait.js'
import { rawConnection } from '../../helpers/raw-mqtt.js'

let broker: TestBroker
test.before(async () => { broker = await startTestBroker({ MQTT_ALLOW_ANONYMOUS: true }) })
test.after.always(async () => { await broker?.close(); await broker?.db.drop() })

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

interface Got { topic: string, payload: string, retain: boolean, properties: Record<string, unknown> }

async function client (clientId: string, opts: IClientOptions = {}): Promise<{ c: MqttClient, got: Got[] }> {
  const c = await mqtt.connectAsync(broker.url, { protocolVersion: 5, clientId, reconnectPeriod: 0, ...opts })
  const got: Got[] = []
  c.on('message', (topic, payload, packet) => got.push({ topic, payload: payload.toString(), retain: packet.retain, properties: (packet.properties ?? {}) as Record<string, unknown> }))
  return { c, got }
}

test('retained message with Message Expiry Interval [MQTT-3.3.2-5]: delivered with the remaining interval, then gone', async (t) => {
  const { c: pub } = await client('ret-exp-pub')
  await pub.publishAsync('dev/retained-expiry', 'short-lived', { qos: 1, retain: true, properties: { messageExpiryInterval: 2 } })
  const { c: early, got } = await client('ret-exp-early')
  await early.subscribeAsync('dev/retained-expiry', { qos: 1 })
  const first = await waitFor(() => got[0], { what: 'retained message' })
  t.true(first.retain)
  t.true((first.properties.messageExpiryInterval as number) <= 2)
  await sleep(2500)
  const { c: late, got: lateGot } = await client('ret-exp-late')
  await late.subscribeAsync('dev/retained-expiry', { qos: 1 })
  await sleep(500)
  t.deepEqual(lateGot, [], 'expired: no longer retained')
  await Promise.all([pub.endAsync(), early.endAsync(), late.endAsync()])
})

test('Will Delay Interval [MQTT-3.1.3-9]: the will comes after the delay, and a reconnect within it cancels the will', async (t) => {
  const { c: watcher, got } = await client('will-delay-watch')
  await watcher.subscribeAsync('dev/will-delay/#', { qos: 1 })
  const dying = async (id: string) => {
    const c = rawConnection(broker.app.mqttPort)
    c.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clientId: id, clean: true, keepalive: 30, properties: { sessionExpiryInterval: 30 }, will: { topic: `dev/will-delay/${id}`, payload: Buffer.from('gone'), qos: 1, retain: false, properties: { willDelayInterval: 2 } } } as Partial<Packet>)
    await waitFor(() => c.of('connack').length > 0, { what: 'CONNACK' })
    c.close()
  }
  const t0 = Date.now()
  await dying('wd-late')
  await dying('wd-back')
  await sleep(800)
  t.deepEqual(got, [], 'not before the delay')
  // wd-back comes back within its delay: its will is not sent.
  const back = await mqtt.connectAsync(broker.url, { protocolVersion: 5, clientId: 'wd-back', clean: false, properties: { sessionExpiryInterval: 30 }, reconnectPeriod: 0 })
  await waitFor(() => got.find((g) => g.topic === 'dev/will-delay/wd-late'), { what: 'delayed will', timeoutMs: 5000 })
  t.true(Date.now() - t0 >= 1900, `after ${Date.now() - t0} ms`)
  await sleep(1000)
  t.deepEqual(got.map((g) => g.topic), ['dev/will-delay/wd-late'])
  await Promise.all([watcher.endAsync(), back.endAsync()])
})

test('No Local [MQTT-3.8.3-3]: a client does not get its own messages on such a subscription; others do', async (t) => {
  const { c: self, got } = await client('nl-self')
  const { c: other, got: otherGot } = await client('nl-other')
  await self.subscribeAsync('dev/nl', { qos: 1, nl: true })
  await other.subscribeAsync('dev/nl', { qos: 1 })
  await self.publishAsync('dev/nl', 'mine', { qos: 1 })
  await waitFor(() => otherGot.length > 0, { what: 'other gets it' })
  await sleep(300)
  t.deepEqual(got, [])
  await Promise.all([self.endAsync(), other.endAsync()])
})

test('Retain As Published [MQTT-3.3.1-12]: the retain flag is kept on live messages only for rap subscriptions', async (t) => {
  const { c: rap, got: rapGot } = await client('rap-1')
  const { c: plain, got: plainGot } = await client('rap-0')
  await rap.subscribeAsync('dev/rap', { qos: 1, rap: true })
  await plain.subscribeAsync('dev/rap', { qos: 1 })
  const { c: pub } = await client('rap-pub')
  await pub.publishAsync('dev/rap', 'kept', { qos: 1, retain: true })
  await waitFor(() => rapGot.length > 0 && plainGot.length > 0, { what: 'both' })
  t.true(rapGot[0]!.retain)
  t.false(plainGot[0]!.retain)
  await pub.publishAsync('dev/rap', '', { qos: 1, retain: true }) // clear
  await Promise.all([rap.endAsync(), plain.endAsync(), pub.endAsync()])
})

test('Retain Handling [MQTT-3.3.1-9..11]: 0 on every subscribe, 1 on a new subscription only, 2 never', async (t) => {
  const { c: pub } = await client('rh-pub')
  await pub.publishAsync('dev/rh', 'kept', { qos: 1, retain: true })
  const count = async (rh: 0 | 1 | 2) => {
    const { c, got } = await client(`rh-${rh}`)
    await c.subscribeAsync('dev/rh', { qos: 1, rh })
    await c.subscribeAsync('dev/rh', { qos: 1, rh }) // again, existing
    await sleep(400)
    await c.endAsync()
    return got.length
  }
  t.is(await count(0), 2)
  t.is(await count(1), 1)
  t.is(await count(2), 0)
  await pub.publishAsync('dev/rh', '', { qos: 1, retain: true })
  await pub.endAsync()
})

test('user properties, content type and payload format pass through [MQTT-3.3.2-17/-18]', async (t) => {
  const { c: sub, got } = await client('up-sub')
  await sub.subscribeAsync('dev/up', { qos: 1 })
  const { c: pub } = await client('up-pub')
  await pub.publishAsync('dev/up', '{"a":1}', { qos: 1, properties: { userProperties: { site: 'lab', tag: ['x', 'y'] }, contentType: 'application/json', payloadFormatIndicator: true } })
  const m = await waitFor(() => got[0], { what: 'message' })
  t.deepEqual(m.properties.userProperties, { site: 'lab', tag: ['x', 'y'] }, 'order and repeats kept')
  t.is(m.properties.contentType, 'application/json')
  t.is(m.properties.payloadFormatIndicator, true)
  await Promise.all([sub.endAsync(), pub.endAsync()])
})

test('request/response [4.10]: Response Topic and Correlation Data reach the responder, whose answer reaches the requester', async (t) => {
  const { c: responder } = await client('rr-responder')
  await responder.subscribeAsync('dev/rr/requests', { qos: 1 })
  responder.on('message', (_topic, payload, packet) => {
    const p = packet.properties ?? {}
    responder.publish(p.responseTopic!, `re:${payload.toString()}`, { qos: 1, properties: { correlationData: p.correlationData } })
  })
  const { c: requester, got } = await client('rr-requester')
  await requester.subscribeAsync('dev/rr/replies/rr-requester', { qos: 1 })
  await requester.publishAsync('dev/rr/requests', 'ping', { qos: 1, properties: { responseTopic: 'dev/rr/replies/rr-requester', correlationData: Buffer.from('req-42') } })
  const reply = await waitFor(() => got[0], { what: 'reply' })
  t.is(reply.payload, 're:ping')
  t.is(Buffer.from(reply.properties.correlationData as Buffer).toString(), 'req-42')
  await Promise.all([responder.endAsync(), requester.endAsync()])
})

test('Subscription Identifiers [MQTT-3.3.4-3/-4]: echoed; a message matching two subscriptions comes once carrying both', async (t) => {
  const c = rawConnection(broker.app.mqttPort)
  c.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clientId: 'si-raw', clean: true, keepalive: 30 } as Partial<Packet>)
  await waitFor(() => c.of('connack').length > 0, { what: 'CONNACK' })
  c.send({ cmd: 'subscribe', messageId: 1, properties: { subscriptionIdentifier: 7 }, subscriptions: [{ topic: 'dev/si/+', qos: 1 }] } as Partial<Packet>)
  c.send({ cmd: 'subscribe', messageId: 2, properties: { subscriptionIdentifier: 9 }, subscriptions: [{ topic: 'dev/si/#', qos: 1 }] } as Partial<Packet>)
  c.send({ cmd: 'subscribe', messageId: 3, subscriptions: [{ topic: 'dev/si/only/+', qos: 1 }] } as Partial<Packet>)
  await waitFor(() => c.of('suback').length === 3, { what: 'SUBACKs' })
  const { c: pub } = await client('si-pub')
  await pub.publishAsync('dev/si/both', 'x', { qos: 1 })
  await pub.publishAsync('dev/si/only/deep', 'y', { qos: 1 }) // dev/si/# (9) and dev/si/only/+ (none)
  await waitFor(() => c.of('publish').length >= 2, { what: 'two messages' })
  await sleep(400)
  const publishes = c.of('publish')
  t.is(publishes.length, 2, 'one copy each')
  const both = publishes.find((p) => p.topic === 'dev/si/both')
  t.deepEqual([both.properties?.subscriptionIdentifier].flat().sort(), [7, 9])
  const deep = publishes.find((p) => p.topic === 'dev/si/only/deep')
  t.is(deep.properties?.subscriptionIdentifier, 9, 'the identifier of the one matching subscription that has one')
  for (const p of publishes) c.send({ cmd: 'puback', messageId: p.messageId, reasonCode: 0 } as Partial<Packet>)
  c.close()
  await pub.endAsync()
})

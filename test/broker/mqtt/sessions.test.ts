// Device sessions and device messages that must not outlive or break what
// they belong to (issue 11): a deleted device's MQTT session goes with it,
// and reports nested too deeply are acknowledged, ignored and counted.
import test from 'ava'
import { connect } from 'node:net'
import mqttPacket, { type Packet } from 'mqtt-packet'
import { startTestBroker, connectDevice, api, type TestBroker } from '../../helpers/broker.js'
import { waitFor } from '../../helpers/wait.js'

let broker: TestBroker
test.before(async () => { broker = await startTestBroker() })
test.after.always(async () => { await broker?.close(); await broker?.db.drop() })

/** A raw MQTT connection that records every packet the broker sends. */
function rawDevice (id: string, secret: string, clean: boolean) {
  const socket = connect(broker.app.mqttPort, '127.0.0.1')
  const parser = mqttPacket.parser({ protocolVersion: 4 })
  const packets: Packet[] = []
  parser.on('packet', (p) => packets.push(p))
  socket.on('data', (d) => parser.parse(d))
  socket.on('error', () => {})
  const send = (p: Partial<Packet>) => socket.write(mqttPacket.generate(p as Packet))
  send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId: id, username: id, password: Buffer.from(secret), clean, keepalive: 30 })
  return { packets, send, close: () => socket.destroy() }
}

test('a deleted device takes its MQTT session with it: the same id created again starts with no session and none of the old messages', async (t) => {
  const first = (await api(broker.app, 'POST', '/v1/devices', { id: 'reborn' })).body
  const old = rawDevice('reborn', first.secret, false)
  await waitFor(() => old.packets[0]?.cmd === 'connack', { what: 'CONNACK' })
  old.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'devices/reborn/config', qos: 1 }] })
  await waitFor(() => old.packets.some((p) => p.cmd === 'suback'), { what: 'SUBACK' })
  // A config is pushed and never acknowledged: it stays in the session's queue.
  await api(broker.app, 'PUT', '/v1/devices/reborn/config', { config: { secretOfTheOldDevice: true } })
  await waitFor(() => old.packets.some((p) => p.cmd === 'publish'), { what: 'config PUBLISH' })
  old.close()
  await waitFor(async () => (await api(broker.app, 'GET', '/v1/devices/reborn')).body.online === false, { what: 'offline' })

  t.is((await api(broker.app, 'DELETE', '/v1/devices/reborn')).status, 204)
  const second = (await api(broker.app, 'POST', '/v1/devices', { id: 'reborn' })).body
  const reborn = rawDevice('reborn', second.secret, false)
  await waitFor(() => reborn.packets[0]?.cmd === 'connack', { what: 'CONNACK' })
  await new Promise((resolve) => setTimeout(resolve, 300))
  t.false((reborn.packets[0] as { sessionPresent: boolean }).sessionPresent, 'sessionPresent=0')
  t.deepEqual(reborn.packets.map((p) => p.cmd), ['connack'], "nothing of the old device's session is sent")
  reborn.close()
})

test('config reports and command results nested too deeply are acknowledged, ignored and counted as invalid', async (t) => {
  const dev = (await api(broker.app, 'POST', '/v1/devices', { id: 'deep-reports' })).body
  const client = await connectDevice(broker.url, dev.id, dev.secret)
  await api(broker.app, 'PUT', '/v1/devices/deep-reports/config', { config: { a: 1 } })
  const cmd = (await api(broker.app, 'POST', '/v1/devices/deep-reports/commands', { name: 'reboot' })).body
  const metric = async (kind: string) => {
    const m = await broker.app.metrics.registry.getSingleMetric('fleetgate_device_messages_total')!.get()
    return m.values.filter((v) => v.labels.kind === kind && v.labels.outcome === 'invalid').reduce((a, v) => a + v.value, 0)
  }
  const beforeReported = await metric('config_reported')
  const beforeResult = await metric('command_result')
  const deep = (n: number) => '['.repeat(n) + ']'.repeat(n)
  // PUBACKs arrive (publishAsync resolves), the connection stays open.
  await client.publishAsync('devices/deep-reports/config/reported', `{"version":1,"config":${deep(10_000)}}`, { qos: 1 })
  await client.publishAsync(`devices/deep-reports/commands/${cmd.id}/result`, `{"status":"succeeded","result":${deep(10_000)}}`, { qos: 1 })
  t.true(client.connected)
  t.is(await metric('config_reported'), beforeReported + 1)
  t.is(await metric('command_result'), beforeResult + 1)
  // Nothing was recorded from them: the command is still open, the config not reported.
  t.not((await api(broker.app, 'GET', `/v1/commands/${cmd.id}`)).body.status, 'succeeded')
  t.is((await api(broker.app, 'GET', '/v1/devices/deep-reports')).body.config.reportedVersion, null)
  await client.endAsync()
})

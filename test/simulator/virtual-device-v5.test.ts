// What an MQTT 5 virtual device puts on the wire, read by a raw server
// (mqtt-packet): telemetry through a topic alias, command results through the
// Response Topic with the Correlation Data.
import test from 'ava'
import { createServer, type AddressInfo } from 'node:net'
import mqttPacket, { type Packet, type IPublishPacket } from 'mqtt-packet'
import { startFleet } from '../../simulator/fleet-runner.js'
import { CONFIG_FOLLOWER } from '../../simulator/virtual-device.js'

test('an MQTT 5 device sets its telemetry alias once, then publishes with an empty topic, and answers a command through the Response Topic', async (t) => {
  const publishes: IPublishPacket[] = []
  let connectVersion: number | undefined
  let gotResult!: () => void
  const resultSeen = new Promise<void>((resolve) => { gotResult = resolve })
  const server = createServer((socket) => {
    const parser = mqttPacket.parser({ protocolVersion: 5 })
    const send = (p: Partial<Packet>) => socket.write(mqttPacket.generate(p as Packet, { protocolVersion: 5 }))
    parser.on('packet', (p: Packet) => {
      if (p.cmd === 'connect') { connectVersion = p.protocolVersion; send({ cmd: 'connack', sessionPresent: false, reasonCode: 0, properties: { topicAliasMaximum: 8 } }) }
      if (p.cmd === 'subscribe') {
        send({ cmd: 'suback', messageId: p.messageId, granted: [1] })
        send({ cmd: 'publish', topic: 'devices/w5/commands/cmd-1', payload: Buffer.from('{"name":"ping"}'), qos: 1, messageId: 7, retain: false, dup: false, properties: { responseTopic: 'devices/w5/commands/cmd-1/result', correlationData: Buffer.from('cmd-1') } })
      }
      if (p.cmd === 'publish') {
        publishes.push(p)
        if (p.qos === 1) send({ cmd: 'puback', messageId: p.messageId, reasonCode: 0 })
        if (String(p.topic).endsWith('/result')) gotResult()
      }
    })
    socket.on('data', (d) => parser.parse(d))
    socket.on('error', () => {})
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { server.close() })
  const port = (server.address() as AddressInfo).port
  const fleet = startFleet({
    devices: [{ id: 'w5', secret: 's', broker: `mqtt://127.0.0.1:${port}` }],
    profile: { ...CONFIG_FOLLOWER, protocolVersion: 5, commands: true, config: false, payloadBytes: 100 },
    load: { kind: 'interval', intervalMs: 20, jitter: 0 },
    rampPerSecond: Infinity,
    churnPerMinute: 0,
    seed: 1,
    recordAcks: false
  })
  await resultSeen
  await new Promise((resolve) => setTimeout(resolve, 200))
  const report = await fleet.stop({ drainMs: 500 })
  t.is(connectVersion, 5)
  const telemetry = publishes.filter((p) => !String(p.topic).endsWith('/result'))
  t.true(telemetry.length >= 3, `telemetry ${telemetry.length}`)
  t.is(telemetry[0]!.topic, 'devices/w5/telemetry')
  t.is(telemetry[0]!.properties?.topicAlias, 1)
  for (const p of telemetry.slice(1)) { t.is(p.topic, ''); t.is(p.properties?.topicAlias, 1) }
  const result = publishes.find((p) => String(p.topic).endsWith('/result'))!
  t.is(result.topic, 'devices/w5/commands/cmd-1/result')
  t.is(result.properties?.correlationData?.toString(), 'cmd-1')
  t.deepEqual(report.errors, {})
})

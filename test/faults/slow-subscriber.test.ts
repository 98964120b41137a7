// Issue 7: a slow subscriber under a QoS 0 flood. One client subscribes and
// then stops reading its socket while another floods QoS 0 messages to that
// topic as fast as TCP lets it (plain MQTT, anonymous mode: devices cannot
// subscribe to each other's topics at all). The broker (its own process, so
// its memory can be read) must not grow without bound: the outgoing data
// waits in bounded socket buffers, the publisher is slowed down by TCP, and
// the subscriber is disconnected after MQTT_DRAIN_TIMEOUT_MS. Meanwhile a
// device's telemetry is still acknowledged.
import test from 'ava'
import { exclusive } from '../helpers/exclusive.js'
import { readFile } from 'node:fs/promises'
import { createConnection, type Socket } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import mqtt from 'mqtt'
import mqttPacket, { type Packet } from 'mqtt-packet'
import { createTestDatabase } from '../helpers/database.js'
import { startBrokerProcess } from '../helpers/broker-process.js'
import { T0 } from '../helpers/time.js'

const FLOOD_MS = 12_000
const DRAIN_TIMEOUT_MS = 3000
const MEMORY_BOUND_MB = 100

async function rssMb (pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8')
  return Number(/VmRSS:\s+(\d+)/.exec(status)![1]) / 1024
}

function rawClient (port: number, clientId: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = createConnection(port, '127.0.0.1')
    socket.on('error', () => {})
    socket.once('connect', () => {
      socket.write(mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, clientId, keepalive: 0 } as Packet))
      socket.once('data', (d) => d[0] === 0x20 && d[3] === 0 ? resolve(socket) : reject(new Error(`CONNACK refused: ${d.toString('hex')}`)))
    })
  })
}

test('a QoS 0 flood to a subscriber that does not read: bounded broker memory, the subscriber is cut off, devices unaffected', async (t) => {
  t.timeout(240_000) // it may first wait for the other heavy fault tests
  await exclusive('heavy-fault-test', async () => {
    const db = await createTestDatabase()
    const broker = await startBrokerProcess({ DATABASE_URL: db.url, MQTT_ALLOW_ANONYMOUS: 'true', MQTT_DRAIN_TIMEOUT_MS: String(DRAIN_TIMEOUT_MS) })
    t.teardown(async () => { await broker.kill('SIGKILL'); await db.drop() })
    await broker.ready()
    const pid = broker.proc.pid!

    // The slow subscriber: subscribes, then never reads again.
    const slow = await rawClient(broker.mqttPort, 'slow-sub')
    slow.write(mqttPacket.generate({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'flood/#', qos: 0 }] } as Packet))
    await sleep(200)
    slow.pause()
    // A paused socket does not notice the broker closing it (the FIN waits
    // behind unread data), so the broker's own count tells.
    const slowConsumerDisconnects = async () => {
      const text = await (await fetch(`http://127.0.0.1:${broker.httpPort}/metrics`)).text()
      return Number(/fleetgate_mqtt_disconnects_total\{reason="slow_consumer"\} (\d+)/.exec(text)?.[1] ?? 0)
    }
    let slowClosedAt: number | undefined

    // A device publishing telemetry at QoS 1 throughout.
    const device = await broker.api('POST', '/v1/devices', { id: 'bystander' })
    const bystander = await mqtt.connectAsync(broker.mqttUrl, { clientId: 'bystander', username: 'bystander', password: device.body.secret, reconnectPeriod: 0 })
    let bystanderAcks = 0
    let stop = false
    const bystanderLoop = (async () => {
      for (let n = 0; !stop; n++) {
        await bystander.publishAsync('devices/bystander/telemetry', JSON.stringify({ ts: T0 + n, n }), { qos: 1 })
        bystanderAcks++
        await sleep(20)
      }
    })()

    const rssStart = await rssMb(pid) // before the flood
    // The flood: 1 KiB QoS 0 publishes, written as fast as the socket drains.
    const publisher = await rawClient(broker.mqttPort, 'flooder')
    const packet = mqttPacket.generate({ cmd: 'publish', topic: 'flood/x', payload: Buffer.alloc(1024, 120), qos: 0, retain: false, dup: false } as Packet)
    const burst = Buffer.concat(Array.from({ length: 64 }, () => packet))
    let sent = 0
    const floodStart = Date.now()
    const flood = (async () => {
      while (!stop && !publisher.destroyed) {
        sent += 64
        if (!publisher.write(burst)) {
          await new Promise<void>((resolve) => {
            const done = () => { publisher.off('drain', done); publisher.off('close', done); resolve() }
            publisher.once('drain', done); publisher.once('close', done)
          })
        }
      }
    })()
    let rssMax = rssStart
    while (Date.now() - floodStart < FLOOD_MS) {
      rssMax = Math.max(rssMax, await rssMb(pid))
      if (slowClosedAt === undefined && await slowConsumerDisconnects() > 0) slowClosedAt = Date.now()
      await sleep(200)
    }
    stop = true
    publisher.destroy()
    await flood
    await bystanderLoop

    t.log(`flooded ${sent} messages (${Math.round(sent / (FLOOD_MS / 1000))}/s) for ${FLOOD_MS / 1000} s; broker RSS ${rssStart.toFixed(0)} → max ${rssMax.toFixed(0)} MB; slow subscriber cut off after ${slowClosedAt ? ((slowClosedAt - floodStart) / 1000).toFixed(1) + ' s' : 'never'}; ${bystanderAcks} device PUBACKs`)
    t.is(broker.proc.exitCode, null, 'the broker is alive')
    t.true(rssMax - rssStart < MEMORY_BOUND_MB, `broker RSS grew ${(rssMax - rssStart).toFixed(0)} MB (bound ${MEMORY_BOUND_MB} MB)`)
    t.truthy(slowClosedAt, 'the subscriber that does not read was disconnected (counted as slow_consumer)')
    t.true(slowClosedAt! - floodStart >= DRAIN_TIMEOUT_MS - 500, 'not before its drain timeout')
    t.true(bystanderAcks > 100, 'the device kept being acknowledged during the flood')
    t.true(sent > 10_000, 'the flood was real')
    await bystander.endAsync()
    slow.destroy()
  })
})

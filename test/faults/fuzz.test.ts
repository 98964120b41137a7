// Issue 7, fault test 4: random and mutated MQTT byte streams and random REST
// requests. The broker must not crash or leak internals, and a well-behaved
// device connected meanwhile must keep working.
import test from 'ava'
import { exclusive } from '../helpers/exclusive.js'
import { connect } from 'node:net'
import mqttPacket, { type Packet } from 'mqtt-packet'
import { startTestBroker, connectDevice, type TestBroker } from '../helpers/broker.js'
import { T0 } from '../helpers/time.js'

let broker: TestBroker
test.before(async () => { broker = await startTestBroker({ MQTT_CONNECT_TIMEOUT_MS: 1000 }) })
test.after.always(async () => { await broker?.close(); await broker?.db.drop() })

function rng (seed: number) {
  let a = seed >>> 0
  return () => { a = (a + 0x6D2B79F5) >>> 0; let t = a; t = Math.imul(t ^ (t >>> 15), t | 1); t ^= t + Math.imul(t ^ (t >>> 7), t | 61); return ((t ^ (t >>> 14)) >>> 0) / 4294967296 }
}

/** Sends bytes on a fresh connection and resolves when the broker closes it or after `ms`. */
function blast (port: number, chunks: Buffer[], ms = 300): Promise<void> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1')
    const done = () => { clearTimeout(timer); s.destroy(); resolve() }
    const timer = setTimeout(done, ms)
    s.on('error', done)
    s.on('close', done)
    s.on('data', () => {})
    s.on('connect', () => { for (const c of chunks) s.write(c) })
  })
}

test('random and mutated MQTT streams never crash the broker; a good device is unaffected', async (t) => {
  t.timeout(240_000) // it may first wait for the other heavy fault tests
  await exclusive('heavy-fault-test', async () => {
    const dev = await broker.app.devices.create({ id: 'fuzz-good' })
    const victim = await broker.app.devices.create({ id: 'fuzz-victim' })
    const good = await connectDevice(broker.url, dev.id, dev.secret)
    const random = rng(7)
    const valid: Array<Partial<Packet>> = [
      { cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId: victim.id, username: victim.id, password: Buffer.from(victim.secret), clean: true, keepalive: 10 },
      { cmd: 'publish', topic: 'devices/fuzz-victim/telemetry', qos: 1, messageId: 7, payload: Buffer.from('{"v":1}'), dup: false, retain: false },
      { cmd: 'subscribe', messageId: 3, subscriptions: [{ topic: 'devices/fuzz-victim/#', qos: 1 }] },
      { cmd: 'pingreq' }, { cmd: 'disconnect' }
    ]
    const templates = valid.map((p) => mqttPacket.generate(p as Packet))
    const mutate = (b: Buffer): Buffer => {
      const out = Buffer.from(b)
      const kind = Math.floor(random() * 5)
      if (kind === 0) for (let i = 0; i < 1 + random() * 4; i++) out[Math.floor(random() * out.length)] = Math.floor(random() * 256) // flip bytes
      if (kind === 1) return out.subarray(0, Math.floor(random() * out.length)) // truncate
      if (kind === 2) { out[1] = 0xff; return Buffer.concat([out.subarray(0, 2), Buffer.from([0xff, 0xff, 0x7f]), out.subarray(2)]) } // absurd length
      if (kind === 3) out[0] = (out[0]! & 0xf0) | Math.floor(random() * 16) // wrong flags
      if (kind === 4) return Buffer.from(Array.from({ length: Math.floor(random() * 64) }, () => Math.floor(random() * 256))) // noise
      return out
    }
    const invalidUtf8Topic = Buffer.concat([Buffer.from([0x30, 0x07, 0x00, 0x03, 0xff, 0xfe, 0xfd]), Buffer.from('xy')])
    for (let round = 0; round < 150; round++) {
      const chunks = templates.slice(0, 1 + Math.floor(random() * templates.length)).map((b) => random() < 0.6 ? mutate(b) : b)
      if (round % 10 === 0) chunks.push(invalidUtf8Topic)
      await blast(broker.app.mqttPort, chunks)
      if (round % 25 === 0) {
        await good.publishAsync(`devices/${dev.id}/telemetry`, JSON.stringify({ ts: T0 + round, round }), { qos: 1 })
      }
    }
    t.true(good.connected, 'the well-behaved device kept its connection')
    await good.publishAsync(`devices/${dev.id}/telemetry`, JSON.stringify({ ts: T0 + 1000, last: true }), { qos: 1 })
    const { rows } = await broker.app.pool.query("SELECT count(*)::int AS n FROM telemetry WHERE device_id = 'fuzz-good'")
    t.is(rows[0].n, 7)
    // Nothing accumulated: every fuzzing connection is gone.
    const { value } = (await broker.app.metrics.registry.getSingleMetric('fleetgate_mqtt_connected_clients')!.get()).values[0]!
    t.true(value <= 2, `connected clients after fuzzing: ${value}`)
    await good.endAsync()
  })
})

test('random REST requests get 4xx (never 5xx) and no internals', async (t) => {
  const random = rng(11)
  const pick = <T>(xs: T[]) => xs[Math.floor(random() * xs.length)]!
  const junk = () => pick(['', 'null', '[]', '{}', '{"id":', '"x"', '{"config":[]}', '{"name":1}', '{"count":-1}', '{"selector":{}}', '\u0000', '{"a":"\\u0000"}', 'x'.repeat(5000), JSON.stringify({ config: { deep: JSON.parse('['.repeat(50) + ']'.repeat(50)) } })])
  const paths = ['/v1/devices', '/v1/devices/bulk', '/v1/devices/%2e%2e', '/v1/devices/a%2Fb', '/v1/devices/x/config', '/v1/devices/x/commands', '/v1/commands/zzz', '/v1/rollouts', '/v1/rollouts/1/pause', '/v1/tokens', '/v1/devices/x/telemetry?from=nope&limit=-3', '/v1/devices?labels=%00&online=maybe', '/v1/devices?cursor=%7B']
  const auths = ['Bearer test-admin-token-0123456789', 'Bearer ', 'Basic abc', '', 'Bearer ' + 'a'.repeat(3000)]
  for (let i = 0; i < 300; i++) {
    const auth = pick(auths)
    const res = await broker.app.http.inject({
      method: pick(['GET', 'POST', 'PUT', 'PATCH', 'DELETE'] as const),
      url: pick(paths),
      headers: { ...(auth ? { authorization: auth } : {}), 'content-type': pick(['application/json', 'text/plain', 'application/x-www-form-urlencoded']), 'idempotency-key': pick(['k', '', 'x'.repeat(300)]) },
      payload: junk()
    })
    t.true(res.statusCode < 500, `${res.statusCode} for ${res.body.slice(0, 200)}`)
    t.false(/node_modules|\.ts:\d|at [A-Za-z]+ \(|SELECT |INSERT /.test(res.body), res.body.slice(0, 200))
  }
})

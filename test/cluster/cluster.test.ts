// Issue 6: two (and three) broker processes sharing one PostgreSQL and one
// real redis-server, as replicas behind a load balancer would.
import test from 'ava'
import mqtt, { type MqttClient } from 'mqtt'
import pg from 'pg'
import { setTimeout as sleep } from 'node:timers/promises'
import { createTestDatabase, type TestDatabase } from '../helpers/database.js'
import { startTestRedis, type TestRedis } from '../helpers/redis.js'
import { startBrokerProcess, type BrokerProcess } from '../helpers/broker-process.js'
import { waitFor } from '../helpers/wait.js'
import { T0 } from '../helpers/time.js'

let db: TestDatabase
let redis: TestRedis
let a: BrokerProcess
let b: BrokerProcess
let sql: pg.Pool
const clients: MqttClient[] = []
// Every broker process of the current test, whose logs a failure shows.
const running = new Set<BrokerProcess>()
async function startReplica (env: Record<string, string>): Promise<BrokerProcess> {
  const p = await startBrokerProcess(env)
  running.add(p)
  return p
}

const clusterEnv = () => ({
  DATABASE_URL: db.url,
  REDIS_URL: redis.url,
  PRESENCE_FLUSH_MS: '50',
  BROKER_HEARTBEAT_MS: '200',
  BROKER_EXPIRY_MS: '1500',
  // Connections and disconnections are logged, for a failing test to show.
  LOG_LEVEL: 'debug'
})

test.before(async () => {
  db = await createTestDatabase()
  redis = await startTestRedis()
  sql = new pg.Pool({ connectionString: db.url, max: 2 })
  ;[a, b] = await Promise.all([startReplica(clusterEnv()), startReplica(clusterEnv())])
  await Promise.all([a.ready(), b.ready()])
})

test.afterEach.always((t) => {
  if (!t.passed) {
    for (const p of running) console.error(`--- ${t.title}: replica MQTT ${p.mqttPort} (exit ${p.proc.exitCode ?? p.proc.signalCode ?? 'running'}), last log lines:\n${p.logTail(60)}`)
  }
  for (const p of running) if (p !== a && p !== b) running.delete(p)
})

test.after.always(async () => {
  for (const c of clients) c.end(true)
  await Promise.all([a?.kill(), b?.kill()])
  await sql?.end()
  await redis?.close()
})

async function register (on: BrokerProcess, id: string, labels: Record<string, string> = {}): Promise<string> {
  const res = await on.api('POST', '/v1/devices', { id, labels })
  if (res.status !== 201) throw new Error(`register ${id}: ${res.status} ${JSON.stringify(res.body)}`)
  return (res.body as { secret: string }).secret
}

interface Device { client: MqttClient, messages: Array<{ topic: string, body: any }> } // eslint-disable-line @typescript-eslint/no-explicit-any

async function connect (to: BrokerProcess, id: string, secret: string, opts: mqtt.IClientOptions = {}): Promise<Device> {
  const client = await mqtt.connectAsync(to.mqttUrl, { clientId: id, username: id, password: secret, reconnectPeriod: 0, connectTimeout: 5000, ...opts })
  client.on('error', () => {})
  clients.push(client)
  const messages: Device['messages'] = []
  client.on('message', (topic, payload) => messages.push({ topic, body: JSON.parse(payload.toString()) }))
  return { client, messages }
}

/** Names the step an error came from. */
const step = (what: string) => (err: Error): never => { throw new Error(`${what}: ${err.message}`) }

async function presence (id: string): Promise<{ online: boolean, broker_id: string | null }> {
  const { rows } = await sql.query<{ online: boolean, broker_id: string | null }>('SELECT online, broker_id FROM devices WHERE id = $1', [id])
  return rows[0]!
}

test.serial('a config push, a command and a rollout issued on one replica reach a device on the other, exactly once', async (t) => {
  const secret = await register(a, 'xr-1', { site: 'xr' })
  const dev = await connect(a, 'xr-1', secret)
  await dev.client.subscribeAsync(['devices/xr-1/config', 'devices/xr-1/commands/+'], { qos: 1 })

  const put = await b.api('PUT', '/v1/devices/xr-1/config', { config: { interval: 5 } })
  t.is(put.status, 200)
  t.true(put.body.delivered, 'replica B reports the push delivered through replica A')
  await waitFor(() => dev.messages.some((m) => m.topic === 'devices/xr-1/config' && m.body.version === 1), { what: 'config v1 on the device' })

  const cmd = await b.api('POST', '/v1/devices/xr-1/commands', { name: 'reboot' })
  t.is(cmd.status, 202)
  t.is(cmd.body.status, 'sent', 'the command was handed to the device across replicas')
  await waitFor(() => dev.messages.some((m) => m.topic === `devices/xr-1/commands/${cmd.body.id}`), { what: 'command on the device' })
  // The device answers on its own replica; the waiting request on B sees it.
  const waiting = b.api('GET', `/v1/commands/${cmd.body.id}?waitSeconds=10`)
  await dev.client.publishAsync(`devices/xr-1/commands/${cmd.body.id}/result`, JSON.stringify({ status: 'succeeded', result: { ok: true } }), { qos: 1 })
  t.is((await waiting).body.status, 'succeeded')

  // A rollout started on A covers a device on A and one on B.
  const secret2 = await register(b, 'xr-2', { site: 'xr' })
  const dev2 = await connect(b, 'xr-2', secret2)
  await dev2.client.subscribeAsync('devices/xr-2/config', { qos: 1 })
  await waitFor(async () => (await presence('xr-2')).online, { what: 'xr-2 online' })
  const rollout = await a.api('POST', '/v1/rollouts', { selector: 'site=xr', config: { interval: 60 } })
  t.is(rollout.status, 201)
  await waitFor(() => dev2.messages.some((m) => m.topic === 'devices/xr-2/config' && m.body.config.interval === 60), { what: 'rollout config on xr-2 (replica B)' })
  await waitFor(() => dev.messages.some((m) => m.topic === 'devices/xr-1/config' && m.body.config.interval === 60), { what: 'rollout config on xr-1 (replica A)' })

  // Exactly once: no replica delivered a second copy.
  await sleep(500)
  const count = (d: Device, topic: string, pred: (b: any) => boolean) => d.messages.filter((m) => m.topic === topic && pred(m.body)).length // eslint-disable-line @typescript-eslint/no-explicit-any
  t.is(count(dev, 'devices/xr-1/config', (m) => m.version === 1), 1)
  t.is(count(dev, `devices/xr-1/commands/${cmd.body.id}`, () => true), 1)
  t.is(count(dev, 'devices/xr-1/config', (m) => m.config.interval === 60), 1)
  t.is(count(dev2, 'devices/xr-2/config', (m) => m.config.interval === 60), 1)

  // Disabling a device on B disconnects it from A at once.
  const closed = new Promise<void>((resolve) => dev.client.once('close', () => resolve()))
  t.is((await b.api('PATCH', '/v1/devices/xr-1', { disabled: true })).status, 200)
  await closed
  t.pass()
})

test.serial('a persistent session resumes on the other replica and a take-over closes the old connection', async (t) => {
  const secret = await register(a, 'sess-1')
  const first = await connect(a, 'sess-1', secret, { clean: false })
  await first.client.subscribeAsync('devices/sess-1/commands/+', { qos: 1 })
  await first.client.endAsync()
  // Queued while the device is offline: delivered when the session resumes.
  const cmd = await a.api('POST', '/v1/devices/sess-1/commands', { name: 'sync' })
  t.is(cmd.body.status, 'queued')

  const second = await mqtt.connectAsync(b.mqttUrl, { clientId: 'sess-1', username: 'sess-1', password: secret, clean: false, reconnectPeriod: 0 })
  clients.push(second)
  const got: string[] = []
  second.on('message', (topic) => got.push(topic))
  // No SUBSCRIBE here: the subscription comes from the shared session store.
  await waitFor(() => got.includes(`devices/sess-1/commands/${cmd.body.id}`), { what: 'queued command after resuming on B' })

  // Take-over: the same id on A closes B's connection.
  const closedOnB = new Promise<void>((resolve) => second.once('close', () => resolve()))
  const third = await connect(a, 'sess-1', secret, { clean: false })
  await closedOnB
  t.true(third.client.connected)
  await waitFor(async () => { const p = await presence('sess-1'); return p.online ? p : undefined }, { what: 'online after take-over' })
  // The old connection's disconnect (on B) must not flip the device offline.
  await sleep(300)
  t.true((await presence('sess-1')).online)
})

test.serial('a device deleted on one replica loses its session in the shared store: created again, it resumes nothing on any replica', async (t) => {
  const secret = await register(a, 'gone-1')
  const first = await connect(a, 'gone-1', secret, { clean: false })
  await first.client.subscribeAsync('devices/gone-1/config', { qos: 1 })
  await first.client.endAsync()
  t.is((await b.api('DELETE', '/v1/devices/gone-1')).status, 204)
  const again = await register(b, 'gone-1')
  for (const replica of [a, b]) {
    const c = mqtt.connect(replica.mqttUrl, { clientId: 'gone-1', username: 'gone-1', password: again, clean: false, reconnectPeriod: 0, connectTimeout: 5000 })
    const connack = await new Promise<{ sessionPresent: boolean }>((resolve, reject) => { c.once('connect', resolve); c.once('error', reject) })
    t.false(connack.sessionPresent, `sessionPresent=0 on replica ${replica === a ? 'A' : 'B'}`)
    await c.endAsync()
  }
})

test.serial('QoS 1 messages queued for an offline persistent session are delivered when it resumes on another replica: CONNACK first, then each once, in order', async (t) => {
  // Plain MQTT between clients (anonymous mode): what aedes queues in the
  // shared session store while the subscriber is away. The publishing
  // replica hears its own messages back from Redis a little later; a session
  // resumed there meanwhile used to be sent one of them live before its
  // CONNACK (and again from its stored queue): mqtt.js then never saw the
  // CONNACK. The window is a few ms wide, hence the rounds.
  const env = { ...clusterEnv(), MQTT_ALLOW_ANONYMOUS: 'true' }
  const [c, d] = await Promise.all([startReplica(env), startReplica(env)])
  t.teardown(async () => { await Promise.all([c.kill(), d.kill()]) })
  await Promise.all([c.ready(), d.ready()])
  for (let round = 0; round < 25; round++) {
    const id = `queue-sub-${round}`
    const sub = await mqtt.connectAsync(c.mqttUrl, { clientId: id, clean: false, reconnectPeriod: 0 }).catch(step(`round ${round}: subscriber connecting to C`))
    await sub.subscribeAsync(`plant/line-${round}/#`, { qos: 1 })
    await sub.endAsync()
    const pub = await mqtt.connectAsync(d.mqttUrl, { clientId: `queue-pub-${round}`, reconnectPeriod: 0 }).catch(step(`round ${round}: publisher connecting to D`))
    for (let i = 0; i < 5; i++) await pub.publishAsync(`plant/line-${round}/alarm`, JSON.stringify({ i }), { qos: 1 })
    await pub.endAsync()
    // The subscriber comes back on the other replica. The listeners are
    // attached before connecting: queued messages follow the CONNACK at once.
    const back = mqtt.connect(d.mqttUrl, { clientId: id, clean: false, reconnectPeriod: 0, connectTimeout: 10_000 })
    const packets: string[] = []
    const got: number[] = []
    back.on('packetreceive', (p) => packets.push(p.cmd))
    back.on('message', (_topic, payload) => got.push((JSON.parse(payload.toString()) as { i: number }).i))
    await new Promise<void>((resolve, reject) => { back.once('connect', () => resolve()); back.once('error', reject) })
      .catch(step(`round ${round}: subscriber resuming on D (packets received: ${packets.join(', ') || 'none'})`))
    t.is(packets[0], 'connack', `round ${round}: the first packet is the CONNACK`)
    await waitFor(() => got.length >= 5, { what: `round ${round}: 5 queued messages after resuming on the other replica` })
    await sleep(100)
    t.deepEqual(got, [0, 1, 2, 3, 4], `round ${round}: all of them, in order, once`)
    await back.endAsync()
  }
})

test.serial('a Redis outage longer than the client library\'s retry budget: not ready, telemetry still stored, nothing lost or crashed, recovery without a restart', async (t) => {
  const secret = await register(a, 'rd-1')
  const dev = await connect(a, 'rd-1', secret)
  // A device with a will, whose connection will drop during the outage (its
  // will is then handled by the session store while Redis is away).
  const willSecret = await register(b, 'rd-will')
  const willDev = await connect(b, 'rd-will', willSecret, { will: { topic: 'devices/rd-will/telemetry', payload: Buffer.from(JSON.stringify({ ts: T0, will: true })), qos: 1, retain: false } })
  // A device subscribed before the outage, whose config is changed during it.
  const waitingSecret = await register(a, 'rd-waiting')
  const waiting = await connect(a, 'rd-waiting', waitingSecret)
  await waiting.client.subscribeAsync('devices/rd-waiting/config', { qos: 1 })
  await redis.kill()
  // Redis comes back even when a check below fails, or every later test of
  // this file would start its replicas against a dead Redis and fail too.
  let down = true
  t.teardown(async () => { if (down) await redis.start() })
  const outageStart = Date.now()
  // Each replica notices on its own (its next Redis command or reconnect).
  await waitFor(async () => (await a.notReadyReason())?.includes('redis'), { what: 'A not ready while Redis is down' })
  await waitFor(async () => (await b.notReadyReason())?.includes('redis'), { what: 'B not ready while Redis is down' })
  // Connected devices keep publishing; each PUBACK means stored.
  for (let n = 0; n < 20; n++) await dev.client.publishAsync('devices/rd-1/telemetry', JSON.stringify({ ts: T0 + n, n }), { qos: 1 })
  const { rows } = await sql.query<{ n: number }>("SELECT count(*)::int AS n FROM telemetry WHERE device_id = 'rd-1'")
  t.is(rows[0]!.n, 20)
  // A subscription made while Redis is away must not be lost.
  const subscribed = dev.client.subscribeAsync('devices/rd-1/config', { qos: 1 })
  // A push during the outage is stored, answered "not delivered" at once.
  const during = await a.api('PUT', '/v1/devices/rd-waiting/config', { config: { set: 'during outage' } })
  t.is(during.status, 200)
  t.false(during.body.delivered)
  willDev.client.stream.destroy()
  // Longer than ioredis' default budget of 20 reconnect attempts (about 21 s).
  await sleep(Math.max(0, outageStart + 23_000 - Date.now()))
  t.is(a.proc.exitCode, null, 'replica A survived the outage')
  t.is(b.proc.exitCode, null, 'replica B survived the outage')

  await redis.start()
  down = false
  await Promise.all([a.ready(20_000), b.ready(20_000)])
  await subscribed
  // ... and reaches the device once Redis is back, without it doing anything.
  await waitFor(() => waiting.messages.some((m) => m.topic === 'devices/rd-waiting/config' && m.body.config.set === 'during outage'), { what: 'the config set during the outage delivered after it' })
  const got: unknown[] = []
  dev.client.on('message', (topic, payload) => { if (topic === 'devices/rd-1/config') got.push(JSON.parse(payload.toString())) })
  // Cross-replica dispatch works again, to the subscription made during the outage.
  const put = await waitFor(async () => { const r = await b.api('PUT', '/v1/devices/rd-1/config', { config: { after: 'outage' } }); return r.body.delivered ? r : undefined }, { what: 'push after recovery' })
  t.true(put.body.delivered)
  await waitFor(() => got.length > 0, { what: 'config delivered after recovery' })
})

test.serial('a replica killed with SIGKILL does not leave its devices online', async (t) => {
  const c = await startReplica(clusterEnv())
  try {
    await c.ready()
    const s1 = await register(a, 'kill-1'); const s2 = await register(a, 'kill-2')
    await connect(c, 'kill-1', s1)
    await connect(b, 'kill-2', s2)
    await waitFor(async () => (await presence('kill-1')).online && (await presence('kill-2')).online, { what: 'both online' })
    await c.kill('SIGKILL')
    const t0 = Date.now()
    await waitFor(async () => !(await presence('kill-1')).online, { timeoutMs: 10_000, what: 'kill-1 offline after its replica died' })
    t.log(`offline ${Date.now() - t0} ms after SIGKILL (expiry 1500 ms, heartbeat 200 ms)`)
    t.true((await presence('kill-2')).online, 'devices of live replicas stay online')
    const { rows } = await sql.query('SELECT id FROM brokers')
    t.is(rows.length, 2, 'the dead replica is removed from the registry')
  } finally {
    await c.kill('SIGKILL')
  }
})

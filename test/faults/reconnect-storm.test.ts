// Issue 7, fault test 3: a reconnect storm. 10,000 devices connect at the
// same instant, and after the broker is killed (SIGKILL) and restarted they
// all reconnect at the same instant again (mqtt.js retries on a fixed period,
// with no jitter: the worst case). The broker (its own process: one process
// may hold 20,000 files here) must stay up, queue the CONNECTs behind its
// rate limit rather than fail, and have every device connected again within
// STORM_DEADLINE_S. Each phase's duration is logged.
import test from 'ava'
import { exclusive } from '../helpers/exclusive.js'
import pg from 'pg'
import mqtt, { type MqttClient } from 'mqtt'
import { startBrokerProcess, type BrokerProcess } from '../helpers/broker-process.js'
import { createTestDatabase } from '../helpers/database.js'
import { waitFor } from '../helpers/wait.js'

const DEVICES = 10_000
// 10,000 CONNECTs at the default 2,000/s take 5 s; the rest is the kernel's
// SYN retransmission when the accept queue overflows, and the restart.
const STORM_DEADLINE_S = 45

test('10,000 devices reconnecting at once: the broker stays up and all are connected again in time', async (t) => {
  t.timeout(240_000) // it may first wait for the other heavy fault tests
  await exclusive('heavy-fault-test', async () => {
    const db = await createTestDatabase()
    const env = { DATABASE_URL: db.url, PRESENCE_FLUSH_MS: '500', MQTT_CONNECT_QUEUE: '20000' }
    let broker: BrokerProcess = await startBrokerProcess(env)
    const clients: MqttClient[] = []
    t.teardown(async () => {
      for (const c of clients) c.end(true)
      await broker.kill('SIGKILL')
      await db.drop()
    })
    await broker.ready()
    const res = await broker.api('POST', '/v1/devices/bulk', { count: DEVICES, idPrefix: 'storm' })
    t.is(res.status, 200)
    const creds = String(res.body).trim().split('\n').map((l) => JSON.parse(l) as { id: string, secret: string })
    t.is(creds.length, DEVICES)

    let connected = 0
    let connects = 0
    const t0 = Date.now()
    for (const c of creds) {
      const client = mqtt.connect(broker.mqttUrl, { clientId: c.id, username: c.id, password: c.secret, keepalive: 120, reconnectPeriod: 1000, connectTimeout: 30_000, clean: true })
      client.on('error', () => {})
      let up = false
      client.on('connect', () => { connects++; if (!up) { up = true; connected++ } })
      client.on('close', () => { if (up) { up = false; connected-- } })
      clients.push(client)
    }
    await waitFor(() => connected >= DEVICES, { timeoutMs: STORM_DEADLINE_S * 1000, intervalMs: 200, what: `${DEVICES} devices connected (first storm)` })
    const first = (Date.now() - t0) / 1000
    t.log(`first storm: ${DEVICES} devices connected in ${first.toFixed(1)} s`)

    // The broker dies and comes back on the same ports: every device retries at once.
    const { mqttPort, httpPort } = broker
    await broker.kill('SIGKILL')
    await waitFor(() => connected === 0, { timeoutMs: 10_000, what: 'every device noticed' })
    const connectsBefore = connects
    broker = await startBrokerProcess({ ...env, MQTT_PORT: String(mqttPort), HTTP_PORT: String(httpPort), BROKER_EXPIRY_MS: '2000', BROKER_HEARTBEAT_MS: '500' })
    const t1 = Date.now()
    await waitFor(() => connected >= DEVICES, { timeoutMs: STORM_DEADLINE_S * 1000, intervalMs: 200, what: `${DEVICES} devices connected again (second storm)` })
    const second = (Date.now() - t1) / 1000
    t.log(`second storm (after SIGKILL and restart, including start-up): all connected again in ${second.toFixed(1)} s, ${connects - connectsBefore} CONNACKs`)
    t.is(broker.proc.exitCode, null, 'the broker stayed up')
    await broker.ready()
    // Presence agrees: every device online under the new process.
    const sql = new pg.Client({ connectionString: db.url })
    await sql.connect()
    await waitFor(async () => (await sql.query<{ n: number }>('SELECT count(*)::int AS n FROM devices WHERE online')).rows[0]!.n === DEVICES, { timeoutMs: 10_000, what: 'every device online in PostgreSQL' })
    await sql.end()
    for (const c of clients) c.end(true)
  })
})

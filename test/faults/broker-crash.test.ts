// Issue 7, fault test 2: the broker is killed (SIGKILL) while devices publish
// at QoS 1, then restarted; devices reconnect and retransmit. Every reading
// acknowledged before the kill is stored, and none twice.
import test from 'ava'
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import mqtt, { type MqttClient } from 'mqtt'
import pg from 'pg'
import { createTestDatabase } from '../helpers/database.js'
import { freePort } from '../../broker/embedded-postgres.js'
import { waitFor } from '../helpers/wait.js'
import { T0 } from '../helpers/time.js'

const TOKEN = 'crash-test-admin-token-123'

function startBroker (env: Record<string, string>): ChildProcess {
  return spawn(process.execPath, ['--import', 'tsx', 'broker/main.ts'], {
    env: { ...process.env, LOG_LEVEL: 'warn', MQTT_HOST: '127.0.0.1', HTTP_HOST: '127.0.0.1', ADMIN_TOKEN: TOKEN, ...env },
    stdio: ['ignore', 'ignore', 'inherit']
  })
}

test('SIGKILL under QoS 1 load loses no acknowledged reading and stores none twice', async (t) => {
  const db = await createTestDatabase()
  const mqttPort = await freePort(); const httpPort = await freePort()
  const env = { DATABASE_URL: db.url, MQTT_PORT: String(mqttPort), HTTP_PORT: String(httpPort) }
  const ready = () => waitFor(async () => (await fetch(`http://127.0.0.1:${httpPort}/readyz`)).ok, { timeoutMs: 30_000, what: 'broker ready' })
  let broker = startBroker(env)
  t.teardown(() => { broker.kill('SIGKILL') })
  await ready()

  const acked = new Set<string>()
  const clients: MqttClient[] = []
  let stop = false
  const loops: Array<Promise<void>> = []
  for (let d = 0; d < 5; d++) {
    const res = await fetch(`http://127.0.0.1:${httpPort}/v1/devices`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' }, body: JSON.stringify({ id: `crash-${d}` }) })
    const cred = await res.json() as { id: string, secret: string }
    // Persistent session and automatic reconnects: unacknowledged messages are retransmitted.
    const client = mqtt.connect(`mqtt://127.0.0.1:${mqttPort}`, { clientId: cred.id, username: cred.id, password: cred.secret, clean: false, reconnectPeriod: 200, connectTimeout: 5000 })
    client.on('error', () => {})
    clients.push(client)
    await new Promise<void>((resolve) => client.once('connect', () => resolve()))
    loops.push((async () => {
      const inflight = new Set<Promise<void>>()
      for (let n = 0; !stop; n++) {
        const p = new Promise<void>((resolve) => {
          client.publish(`devices/${cred.id}/telemetry`, JSON.stringify({ ts: T0 - n, n }), { qos: 1 }, (err) => {
            if (!err) acked.add(`${cred.id}:${n}`)
            resolve()
          })
        }).finally(() => inflight.delete(p))
        inflight.add(p)
        if (inflight.size >= 10) await Promise.race(inflight)
      }
      await Promise.race([Promise.all(inflight), new Promise((resolve) => setTimeout(resolve, 10_000))])
    })())
  }
  await waitFor(() => acked.size >= 1000, { timeoutMs: 30_000, what: '1000 acknowledged' })
  broker.kill('SIGKILL')
  await once(broker, 'exit')
  const ackedBeforeKill = new Set(acked)
  broker = startBroker(env)
  await ready()
  await waitFor(() => acked.size >= ackedBeforeKill.size + 500, { timeoutMs: 30_000, what: 'publishing resumed after the restart' })
  stop = true
  await Promise.all(loops)
  for (const c of clients) c.end(true)

  const pool = new pg.Client({ connectionString: db.url })
  await pool.connect()
  const { rows } = await pool.query<{ device_id: string, n: number, copies: number }>(
    "SELECT device_id, (payload->>'n')::int AS n, count(*)::int AS copies FROM telemetry GROUP BY 1, 2")
  await pool.end()
  const stored = new Map(rows.map((r) => [`${r.device_id}:${r.n}`, r.copies]))
  t.deepEqual([...ackedBeforeKill].filter((k) => !stored.has(k)), [], 'every reading acknowledged before the kill is stored')
  t.deepEqual([...acked].filter((k) => !stored.has(k)), [], 'and every one acknowledged after it')
  t.deepEqual(rows.filter((r) => r.copies > 1), [], 'none stored twice')
  broker.kill('SIGTERM')
  await once(broker, 'exit')
  await db.drop()
})

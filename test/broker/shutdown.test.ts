import test from 'ava'
import { T0 } from '../helpers/time.js'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import pg from 'pg'
import { startTestBroker, connectDevice } from '../helpers/broker.js'
import { createTestDatabase } from '../helpers/database.js'
import { waitFor } from '../helpers/wait.js'

test('shutdown under load commits every acknowledged reading', async (t) => {
  const broker = await startTestBroker({ INGEST_FLUSH_MS: 20 })
  const DEVICES = 8
  const acked = new Set<string>()
  let stop = false
  const loops: Array<Promise<void>> = []
  for (let d = 0; d < DEVICES; d++) {
    const creds = await broker.app.devices.create({ id: `shut-${d}` })
    const client = await connectDevice(broker.url, creds.id, creds.secret)
    client.on('error', () => {})
    loops.push((async () => {
      // 20 messages in flight per device, as a pipelining device would have.
      let seq = 0
      const inflight = new Set<Promise<void>>()
      // mqtt.js leaves in-flight publishes pending when the connection drops.
      const closed = new Promise<void>((resolve) => client.once('close', () => resolve()))
      while (!stop && client.connected) {
        const n = seq++
        const p = client.publishAsync(`devices/${creds.id}/telemetry`, JSON.stringify({ ts: T0 - n, n }), { qos: 1 })
          .then(() => { acked.add(`${creds.id}:${n}`) }, () => {})
          .finally(() => inflight.delete(p))
        inflight.add(p)
        if (inflight.size >= 20) await Promise.race([...inflight, closed])
      }
      client.end(true)
    })())
  }
  await waitFor(() => acked.size >= 2000, { timeoutMs: 30_000, what: '2000 acknowledged readings' })
  await broker.app.close()
  stop = true
  await Promise.all(loops)
  const ackedAtClose = new Set(acked)

  const db = new pg.Client({ connectionString: broker.db.url })
  await db.connect()
  const { rows } = await db.query<{ device_id: string, n: number }>("SELECT device_id, (payload->>'n')::int AS n FROM telemetry")
  await db.end()
  const stored = new Set(rows.map((r) => `${r.device_id}:${r.n}`))
  const missing = [...ackedAtClose].filter((k) => !stored.has(k))
  t.deepEqual(missing, [], 'every acknowledged reading is stored')
  t.is(stored.size, rows.length, 'no reading stored twice')
  t.true(ackedAtClose.size >= 2000)
  await broker.db.drop()
})

async function runMain (env: Record<string, string>, signalAfterReady?: NodeJS.Signals) {
  const child = spawn(process.execPath, ['--import', 'tsx', 'broker/main.ts'], {
    env: { ...process.env, LOG_LEVEL: 'info', MQTT_HOST: '127.0.0.1', HTTP_HOST: '127.0.0.1', MQTT_PORT: '0', HTTP_PORT: '0', ...env },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let out = ''
  child.stdout.on('data', (d) => { out += d })
  child.stderr.on('data', (d) => { out += d })
  if (signalAfterReady) {
    await waitFor(() => out.includes('fleetgate ready'), { timeoutMs: 30_000, what: 'fleetgate ready' })
    child.kill(signalAfterReady)
  }
  const [code] = await once(child, 'exit') as [number | null]
  return { code, out }
}

test('SIGTERM shuts the process down in order and exits 0', async (t) => {
  const db = await createTestDatabase()
  const { code, out } = await runMain({ DATABASE_URL: db.url }, 'SIGTERM')
  t.is(code, 0, out)
  // In the order they ran (each step is numbered), not the order the pipe delivered them.
  const steps = out.split('\n').filter((l) => l.includes('"shutdown step done"')).map((l) => JSON.parse(l) as { order: number, step: string })
    .sort((x, y) => x.order - y.order).map((l) => l.step)
  t.deepEqual(steps, ['stop accepting', 'drain ingest', 'stop command expiry', 'stop audit retention', 'stop event retention', 'stop retention', 'stop rollouts', 'close broker', 'flush presence', 'deregister', 'close http', 'stop overview stats', 'stop event loop monitor', 'close change feed', 'end pool'], out.split('\n').filter((l) => l.includes('"step"')).join('\n'))
  await db.drop()
})

test('a bad setting stops the process with a message naming it', async (t) => {
  const { code, out } = await runMain({ DATABASE_URL: 'postgres://x@127.0.0.1:1/x', MQTT_PORT: 'abc', INGEST_BATCH_ROWS: '-5' })
  t.is(code, 2)
  t.regex(out, /MQTT_PORT/)
  t.regex(out, /INGEST_BATCH_ROWS/)
})

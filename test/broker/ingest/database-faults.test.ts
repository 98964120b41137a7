// Connections to PostgreSQL die under the broker (here: the server kills
// them, SQLSTATE 57P01) while devices publish: batches are retried, every
// acknowledged reading is stored exactly once.
import test from 'ava'
import { T0 } from '../../helpers/time.js'
import pg from 'pg'
import { startTestBroker, connectDevice } from '../../helpers/broker.js'
import { waitFor } from '../../helpers/wait.js'
import { createTestDatabase } from '../../helpers/database.js'
import { createPool } from '../../../broker/database-pool.js'
import { createLogger } from '../../../broker/logger.js'

test('killed database connections are retried; every acknowledged reading is stored once', async (t) => {
  const broker = await startTestBroker({ INGEST_RETRY_MAX_MS: 50 })
  const admin = new pg.Client({ connectionString: broker.db.url })
  await admin.connect()
  const acked = new Set<string>()
  let stop = false
  const loops: Array<Promise<void>> = []
  for (let d = 0; d < 3; d++) {
    const creds = await broker.app.devices.create({ id: `fault-${d}` })
    const client = await connectDevice(broker.url, creds.id, creds.secret)
    loops.push((async () => {
      for (let n = 0; !stop; n++) {
        await client.publishAsync(`devices/${creds.id}/telemetry`, JSON.stringify({ ts: T0 - n, n }), { qos: 1 })
        acked.add(`${creds.id}:${n}`)
      }
      await client.endAsync()
    })())
  }
  const retries = async () => (await broker.app.metrics.registry.getSingleMetric('fleetgate_ingest_retries_total')!.get()).values[0]?.value ?? 0
  const locker = new pg.Client({ connectionString: broker.db.url })
  await locker.connect()
  for (let kill = 0; kill < 5; kill++) {
    const before = acked.size
    await waitFor(() => acked.size >= before + 100, { what: 'progress between kills' })
    // Hold the table so a batch insert is surely in flight, then kill the
    // connections of the broker, that insert's among them.
    await locker.query('BEGIN')
    await locker.query('LOCK TABLE telemetry IN ACCESS EXCLUSIVE MODE')
    await waitFor(async () => (await admin.query("SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE 'INSERT INTO telemetry%'")).rows.length > 0, { what: 'an insert in flight' })
    await admin.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'fleetgate'")
    await locker.query('COMMIT')
  }
  await locker.end()
  t.true(await retries() >= 5, 'every killed insert was retried')
  stop = true
  await Promise.all(loops)
  const { rows } = await admin.query<{ device_id: string, n: number }>("SELECT device_id, (payload->>'n')::int AS n FROM telemetry")
  const stored = new Set(rows.map((r) => `${r.device_id}:${r.n}`))
  t.is(stored.size, rows.length, 'no duplicates')
  t.deepEqual([...acked].filter((k) => !stored.has(k)), [], 'every acknowledged reading is stored')
  await admin.end()
  await broker.close()
  await broker.db.drop()
})

test('a connection that dies while checked out between two statements does not crash the process', async (t) => {
  const db = await createTestDatabase()
  const pool = createPool({ url: db.url, max: 2, statementTimeoutMs: 5000, log: createLogger({ level: 'silent' }) })
  const admin = new pg.Client({ connectionString: db.url })
  await admin.connect()
  const client = await pool.connect()
  await client.query('BEGIN')
  const pid = (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid
  // Killed while its owner holds it and runs nothing (mid-transaction).
  await admin.query('SELECT pg_terminate_backend($1)', [pid])
  await new Promise((resolve) => setTimeout(resolve, 300))
  await t.throwsAsync(client.query('COMMIT'), undefined, 'the next statement fails instead')
  client.release(true)
  t.is((await pool.query<{ one: number }>('SELECT 1 AS one')).rows[0]!.one, 1, 'and the pool goes on with a fresh connection')
  await pool.end()
  await admin.end()
  await db.drop()
})

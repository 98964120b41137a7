// A PUBACK means stored, even when the whole table refuses writes (issue 11):
// a constraint or trigger that refuses every row, a missing partition, or a
// dead_letters table that refuses inserts is a store fault, not bad data.
// The messages are held (no PUBACK), /readyz says why, and once the fault is
// gone they are stored as what they are. A write stalled by a lock shows in
// readiness and in the oldest-batch gauge. Real PostgreSQL, real MQTT.
import test from 'ava'
import pg from 'pg'
import type { MqttClient } from 'mqtt'
import { T0 } from '../../helpers/time.js'
import { startTestBroker, connectDevice, type TestBroker } from '../../helpers/broker.js'
import { waitFor } from '../../helpers/wait.js'

let broker: TestBroker
let db: pg.Pool
test.before(async () => {
  broker = await startTestBroker({ INGEST_RETRY_MAX_MS: 100, INGEST_STALL_MS: 500 })
  db = new pg.Pool({ connectionString: broker.db.url, max: 4 })
})
test.after.always(async () => { await db?.end(); await broker?.close(); await broker?.db.drop() })

async function device (id: string): Promise<MqttClient> {
  const creds = await broker.app.devices.create({ id })
  return await connectDevice(broker.url, creds.id, creds.secret)
}

async function readyz (): Promise<{ status: number, reason: string }> {
  const res = await broker.app.http.inject({ method: 'GET', url: '/readyz' })
  return { status: res.statusCode, reason: res.body }
}

async function metric (name: string): Promise<number> {
  const m = await broker.app.metrics.registry.getSingleMetric(name)!.get()
  return m.values.reduce((a, v) => a + v.value, 0)
}

const count = async (sql: string, params: unknown[]) => (await db.query(sql, params)).rows[0].n as number

/** Publishes QoS 1 and reports whether the PUBACK came within `ms`. */
function publishTracked (client: MqttClient, topic: string, payload: string) {
  let acked = false
  const p = client.publishAsync(topic, payload, { qos: 1 }).then(() => { acked = true })
  return { get acked () { return acked }, done: p }
}

const hold = () => new Promise((resolve) => setTimeout(resolve, 1200))

// The store-fault tests change shared tables: one at a time.
test.serial('a constraint that refuses every row holds the PUBACKs and readiness; the readings are stored as telemetry once it is dropped', async (t) => {
  const client = await device('fault-check')
  await db.query('ALTER TABLE telemetry ADD CONSTRAINT refuse_all CHECK (false) NOT VALID')
  let dropped = false
  try {
    const sends = [0, 1, 2].map((i) => publishTracked(client, 'devices/fault-check/telemetry', JSON.stringify({ ts: T0 + i, i })))
    await waitFor(async () => (await readyz()).status === 503, { what: 'not ready' })
    const r = await readyz()
    t.regex(r.reason, /refuses every telemetry row \(23514/)
    await hold()
    t.false(sends.some((s) => s.acked), 'no PUBACK while the table refuses rows')
    t.is(await count("SELECT count(*)::int AS n FROM dead_letters WHERE device_id = 'fault-check'", []), 0, 'nothing dead-lettered')
    t.true(await metric('fleetgate_ingest_store_faults_total') >= 1)
    await db.query('ALTER TABLE telemetry DROP CONSTRAINT refuse_all')
    dropped = true
    await Promise.all(sends.map((s) => s.done))
    t.is(await count("SELECT count(*)::int AS n FROM telemetry WHERE device_id = 'fault-check'", []), 3)
    t.is(await count("SELECT count(*)::int AS n FROM dead_letters WHERE device_id = 'fault-check'", []), 0)
    await waitFor(async () => (await readyz()).status === 200, { what: 'ready again' })
  } finally {
    if (!dropped) await db.query('ALTER TABLE telemetry DROP CONSTRAINT IF EXISTS refuse_all')
    await client.endAsync()
  }
})

test.serial('a trigger that raises a data error for every row is a store fault too', async (t) => {
  const client = await device('fault-trigger')
  await db.query(`CREATE FUNCTION refuse_rows() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN RAISE EXCEPTION 'maintenance' USING ERRCODE = '23514'; END $$`)
  await db.query('CREATE TRIGGER refuse_rows BEFORE INSERT ON telemetry FOR EACH ROW EXECUTE FUNCTION refuse_rows()')
  let dropped = false
  try {
    const s = publishTracked(client, 'devices/fault-trigger/telemetry', JSON.stringify({ ts: T0, v: 1 }))
    await hold()
    t.false(s.acked)
    t.is(await count("SELECT count(*)::int AS n FROM dead_letters WHERE device_id = 'fault-trigger'", []), 0)
    await db.query('DROP TRIGGER refuse_rows ON telemetry')
    dropped = true
    await s.done
    t.is(await count("SELECT count(*)::int AS n FROM telemetry WHERE device_id = 'fault-trigger'", []), 1)
  } finally {
    if (!dropped) await db.query('DROP TRIGGER IF EXISTS refuse_rows ON telemetry')
    await db.query('DROP FUNCTION IF EXISTS refuse_rows()')
    await client.endAsync()
  }
})

test.serial('a missing partition holds the readings for its day until the partition exists again', async (t) => {
  const client = await device('fault-partition')
  // A day with a partition of its own, far from the other tests' readings.
  const day = new Date(T0 - 2 * 86_400_000)
  const partition = 'telemetry_' + day.toISOString().slice(0, 10).replaceAll('-', '')
  const ts = Date.UTC(day.getUTCFullYear(), day.getUTCMonth(), day.getUTCDate(), 12)
  await db.query(`DROP TABLE ${partition}`)
  try {
    const s = publishTracked(client, 'devices/fault-partition/telemetry', JSON.stringify({ ts, v: 1 }))
    await waitFor(async () => (await readyz()).status === 503, { what: 'not ready' })
    await hold()
    t.false(s.acked)
    t.is(await count("SELECT count(*)::int AS n FROM dead_letters WHERE device_id = 'fault-partition'", []), 0)
  } finally {
    await db.query('SELECT fleetgate_ensure_telemetry_partitions($1::date, $1::date)', [day.toISOString().slice(0, 10)])
  }
  await waitFor(async () => await count("SELECT count(*)::int AS n FROM telemetry WHERE device_id = 'fault-partition'", []) === 1, { what: 'reading stored' })
  await client.endAsync()
})

test.serial('a dead letter is acknowledged only once stored: a dead_letters table that refuses rows holds it', async (t) => {
  const client = await device('fault-dead')
  await db.query('ALTER TABLE dead_letters ADD CONSTRAINT refuse_all CHECK (false) NOT VALID')
  let dropped = false
  try {
    const sends = Array.from({ length: 5 }, (_, i) => publishTracked(client, 'devices/fault-dead/telemetry', `not json ${i}`))
    await hold()
    t.false(sends.some((s) => s.acked), 'invalid messages are not acknowledged while they cannot be stored')
    t.is(await metric('fleetgate_ingest_dead_letters_lost_total'), 0)
    await db.query('ALTER TABLE dead_letters DROP CONSTRAINT refuse_all')
    dropped = true
    await Promise.all(sends.map((s) => s.done))
    t.is(await count("SELECT count(*)::int AS n FROM dead_letters WHERE device_id = 'fault-dead' AND reason = 'invalid_json'", []), 5)
  } finally {
    if (!dropped) await db.query('ALTER TABLE dead_letters DROP CONSTRAINT IF EXISTS refuse_all')
    await client.endAsync()
  }
})

test.serial('a write held by a lock turns readiness false after INGEST_STALL_MS and shows its age', async (t) => {
  const client = await device('fault-stall')
  const locker = await db.connect()
  try {
    await locker.query('BEGIN')
    await locker.query('LOCK TABLE telemetry IN ACCESS EXCLUSIVE MODE')
    const s = publishTracked(client, 'devices/fault-stall/telemetry', JSON.stringify({ ts: T0, v: 1 }))
    await waitFor(async () => (await readyz()).status === 503, { what: 'not ready' })
    t.regex((await readyz()).reason, /database writes stalled: a batch has been in flight for \d+ s/)
    t.true(await metric('fleetgate_ingest_oldest_batch_age_seconds') >= 0.5)
    t.false(s.acked)
    await locker.query('COMMIT')
    await s.done
    await waitFor(async () => (await readyz()).status === 200, { what: 'ready again' })
    t.is(await metric('fleetgate_ingest_oldest_batch_age_seconds'), 0)
  } finally {
    await locker.query('ROLLBACK').catch(() => {})
    locker.release()
    await client.endAsync()
  }
})

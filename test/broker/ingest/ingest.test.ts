import test from 'ava'
import { T0, iso } from '../../helpers/time.js'
import pg from 'pg'
import { startTestBroker, connectDevice, type TestBroker } from '../../helpers/broker.js'
import { waitFor } from '../../helpers/wait.js'

let broker: TestBroker
let db: pg.Pool
test.before(async () => {
  broker = await startTestBroker({ TELEMETRY_MAX_BYTES: 4096, TELEMETRY_MAX_READINGS: 50 })
  db = new pg.Pool({ connectionString: broker.db.url, max: 4 })
})
test.after.always(async () => { await db?.end(); await broker?.close(); await broker?.db.drop() })

async function device (id: string) {
  const creds = await broker.app.devices.create({ id })
  const client = await connectDevice(broker.url, creds.id, creds.secret)
  return { ...creds, client }
}

async function rows (deviceId: string) {
  return (await db.query('SELECT ts, payload, received_at FROM telemetry WHERE device_id = $1 ORDER BY ts, payload::text', [deviceId])).rows
}

async function deadLetters (deviceId: string) {
  return (await db.query('SELECT topic, payload, reason, detail FROM dead_letters WHERE device_id = $1 ORDER BY id', [deviceId])).rows
}

async function counter (name: string, labels: Record<string, string> = {}): Promise<number> {
  const m = await broker.app.metrics.registry.getSingleMetric(name)!.get()
  return m.values.filter((v) => Object.entries(labels).every(([k, val]) => v.labels[k] === val)).reduce((a, v) => a + v.value, 0)
}

test('a QoS 1 reading is stored with its device, ts and payload before the PUBACK', async (t) => {
  const d = await device('ingest-q1')
  await d.client.publishAsync(`devices/${d.id}/telemetry`, JSON.stringify({ ts: iso(T0 + 678), temp: 21.5 }), { qos: 1 })
  // PUBACK received: the row must already be there, no waiting.
  const r = await rows(d.id)
  t.is(r.length, 1)
  t.is(r[0].ts.toISOString(), iso(T0 + 678))
  t.deepEqual(r[0].payload, { ts: iso(T0 + 678), temp: 21.5 })
  await d.client.endAsync()
})

test('epoch-millisecond ts is accepted; a reading without ts gets the receive time', async (t) => {
  const d = await device('ingest-ts')
  const before = Date.now()
  await d.client.publishAsync(`devices/${d.id}/telemetry`, JSON.stringify([{ ts: T0, v: 1 }, { v: 2 }]), { qos: 1 })
  const r = await rows(d.id)
  t.is(r.length, 2)
  t.is(r[0].ts.getTime(), T0)
  t.true(r[1].ts.getTime() >= before - 1 && r[1].ts.getTime() <= Date.now())
  await d.client.endAsync()
})

test('a QoS 0 reading is stored', async (t) => {
  const d = await device('ingest-q0')
  await d.client.publishAsync(`devices/${d.id}/telemetry`, JSON.stringify({ ts: T0, rpm: 900 }), { qos: 0 })
  const r = await waitFor(async () => { const x = await rows(d.id); return x.length === 1 ? x : undefined }, { what: 'QoS 0 row' })
  t.deepEqual(r[0].payload, { ts: T0, rpm: 900 })
  await d.client.endAsync()
})

test('an array of readings gives one row each', async (t) => {
  const d = await device('ingest-array')
  const readings = Array.from({ length: 25 }, (_, i) => ({ ts: T0 + i * 1000, i }))
  await d.client.publishAsync(`devices/${d.id}/telemetry`, JSON.stringify(readings), { qos: 1 })
  const r = await rows(d.id)
  t.is(r.length, 25)
  t.deepEqual(r.map((x) => x.payload.i), readings.map((x) => x.i))
})

test('a retransmitted reading with the same ts is stored once; different readings sharing a ts are both kept', async (t) => {
  const d = await device('ingest-dup')
  const msg = JSON.stringify({ ts: iso(T0), v: 1 })
  await d.client.publishAsync(`devices/${d.id}/telemetry`, msg, { qos: 1 })
  // A retransmission after a lost PUBACK carries the same bytes (DUP flag set).
  await d.client.publishAsync(`devices/${d.id}/telemetry`, msg, { qos: 1, dup: true })
  await d.client.publishAsync(`devices/${d.id}/telemetry`, JSON.stringify({ ts: iso(T0), v: 2 }), { qos: 1 })
  const r = await rows(d.id)
  t.deepEqual(r.map((x) => x.payload.v), [1, 2])
})

test('readings without ts are at-least-once: a repeat is stored again (documented)', async (t) => {
  const d = await device('ingest-nots')
  await d.client.publishAsync(`devices/${d.id}/telemetry`, JSON.stringify([{ v: 7 }, { v: 7 }]), { qos: 1 })
  t.is((await rows(d.id)).length, 2)
})

const invalid: Array<[string, string | Buffer, string]> = [
  ['bad JSON', '{"temp": 21', 'invalid_json'],
  ['a JSON scalar', '42', 'invalid_shape'],
  ['an array holding a non-object', '[{"a":1}, 2]', 'invalid_shape'],
  ['an empty array', '[]', 'invalid_shape'],
  ['a ts that is not a time', '{"ts":"yesterday","v":1}', 'invalid_ts'],
  ['a ts without time zone', '{"ts":"2026-01-01T00:00:00","v":1}', 'invalid_ts'],
  ['too many readings', JSON.stringify(Array.from({ length: 51 }, () => ({ v: 1 }))), 'too_many_readings'],
  ['an oversized payload', JSON.stringify({ blob: 'x'.repeat(5000) }), 'payload_too_large'],
  ['a string holding \\u0000 (jsonb cannot)', '{"v":"a\\u0000b"}', 'unsupported_value'],
  ['invalid UTF-8', Buffer.from([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x3a, 0x31, 0x7d]), 'invalid_json']
]

for (const [what, payload, reason] of invalid) {
  test(`${what} is acknowledged, dead-lettered with reason ${reason} and counted`, async (t) => {
    const id = 'ingest-dl-' + reason.replace(/_/g, '-') + '-' + Math.random().toString(36).slice(2, 7)
    const d = await device(id)
    const before = await counter('fleetgate_ingest_dead_letters_total', { reason })
    await d.client.publishAsync(`devices/${d.id}/telemetry`, payload, { qos: 1 })
    const dl = await deadLetters(d.id)
    t.is(dl.length, 1)
    t.is(dl[0].reason, reason)
    t.is(dl[0].topic, `devices/${d.id}/telemetry`)
    t.true(Buffer.isBuffer(dl[0].payload))
    if (reason !== 'payload_too_large') t.deepEqual(dl[0].payload, Buffer.from(payload))
    t.truthy(dl[0].detail)
    t.is((await rows(d.id)).length, 0)
    t.true(await counter('fleetgate_ingest_dead_letters_total', { reason }) >= before + 1)
    t.true(d.client.connected, 'a bad payload does not cost the device its connection')
    await d.client.endAsync()
  })
}

test('a reading PostgreSQL refuses is dead-lettered alone and the rest of the batch commits', async (t) => {
  const d = await device('ingest-badrow')
  // Valid JSON, but a number beyond PostgreSQL's numeric range: only the database refuses it.
  const bad = `{"ts":${T0 + 1000},"v":1e200000}`
  const payload = `[{"ts":${T0},"v":1},${bad},{"ts":${T0 + 2000},"v":3}]`
  await d.client.publishAsync(`devices/${d.id}/telemetry`, payload, { qos: 1 })
  t.deepEqual((await rows(d.id)).map((x) => x.payload.v), [1, 3])
  const dl = await deadLetters(d.id)
  t.is(dl.length, 1)
  t.is(dl[0].reason, 'db_rejected')
  t.regex(dl[0].detail, /^22003/)
  t.is(dl[0].payload.toString(), bad)
})

test.serial('PUBACK is not sent before the commit', async (t) => {
  const d = await device('ingest-lock')
  const locker = await db.connect()
  try {
    await locker.query('BEGIN')
    await locker.query('LOCK TABLE telemetry IN ACCESS EXCLUSIVE MODE')
    let acked = false
    const publish = d.client.publishAsync(`devices/${d.id}/telemetry`, JSON.stringify({ ts: T0, v: 'held' }), { qos: 1 })
      .then(() => { acked = true })
    // The insert is issued and blocked on the lock…
    await waitFor(async () => {
      const { rows: w } = await db.query("SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE 'INSERT INTO telemetry%'")
      return w.length > 0
    }, { what: 'the batch insert to wait on the lock' })
    // …so a PUBACK written at enqueue time would have reached the client by
    // now (the broker runs in this process; a few more loop turns for certainty).
    await db.query('SELECT 1')
    t.false(acked, 'no PUBACK while the batch is not committed')
    await locker.query('COMMIT')
    await publish
    t.true(acked)
    t.is((await rows(d.id)).length, 1)
  } finally {
    await locker.query('ROLLBACK').catch(() => {})
    locker.release()
    await d.client.endAsync()
  }
})

test('a device may publish only to its own topics: anything else closes the connection and is counted', async (t) => {
  const victim = await broker.app.devices.create({ id: 'acl-victim' })
  const attacker = await broker.app.devices.create({ id: 'acl-attacker' })
  for (const topic of [`devices/${victim.id}/telemetry`, 'devices/acl-attacker//telemetry', 'devices/acl-attacker/telemetry/x', 'other/topic', '$SYS/x', 'devices/acl-attacker/config']) {
    const d = { client: await connectDevice(broker.url, attacker.id, attacker.secret) }
    const before = await counter('fleetgate_mqtt_acl_refusals_total', { action: 'publish' })
    const closed = new Promise<void>((resolve) => d.client.once('close', () => resolve()))
    d.client.publish(topic, JSON.stringify({ v: 1 }), { qos: 1 })
    await closed
    t.true(await counter('fleetgate_mqtt_acl_refusals_total', { action: 'publish' }) >= before + 1, topic)
    d.client.end(true)
  }
  t.is((await rows(victim.id)).length, 0)
})

test('a device may subscribe only to its config and commands (0x80 otherwise)', async (t) => {
  const d = await device('acl-sub')
  const filters = ['devices/acl-sub/config', 'devices/acl-sub/commands/+', 'devices/acl-sub/#',
    'devices/acl-other/config', 'devices/+/config', '#', 'devices/acl-sub/telemetry', '$SYS/#']
  // mqtt.js rejects a SUBACK holding 0x80 codes; the codes are on the packet.
  const codes = await d.client.subscribeAsync(filters, { qos: 1 })
    .then((g) => g.map((x) => x.qos), (err: { packet?: { granted: number[] } }) => err.packet!.granted)
  const byTopic = Object.fromEntries(filters.map((f, i) => [f, codes[i]]))
  t.is(byTopic['devices/acl-sub/config'], 1)
  t.is(byTopic['devices/acl-sub/commands/+'], 1)
  t.is(byTopic['devices/acl-sub/#'], 1)
  for (const refused of ['devices/acl-other/config', 'devices/+/config', '#', 'devices/acl-sub/telemetry', '$SYS/#']) {
    t.is(byTopic[refused], 128, refused)
  }
  await d.client.endAsync()
})

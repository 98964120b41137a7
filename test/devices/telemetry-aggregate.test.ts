// GET /v1/devices/{id}/telemetry/aggregate (issue 13): count, min, max and
// avg of a numeric field per time bucket, computed in PostgreSQL from only
// the partitions of the range, through their (device_id, ts) index.
import test from 'ava'
import { startTestBroker, api, TEST_ADMIN_TOKEN, type TestBroker } from '../helpers/broker.js'
import { aggregateQuery } from '../../devices/telemetry-store.js'

let broker: TestBroker
test.before(async () => { broker = await startTestBroker({ API_RATE_LIMIT_PER_MINUTE: 100_000 }) })
test.after.always(async () => { await broker?.close(); await broker?.db.drop() })

// The migrations create the daily partitions from yesterday to three days
// ahead (UTC); every reading here is stored in yesterday's or today's.
const DAY = 86_400_000
const MIDNIGHT = Math.floor(Date.now() / DAY) * DAY
const at = (ms: number) => new Date(ms).toISOString()
const partition = (ms: number) => 'telemetry_' + at(ms).slice(0, 10).replace(/-/g, '')

async function insert (deviceId: string, readings: Array<[ms: number, payload: unknown]>): Promise<void> {
  await broker.app.pool.query(
    `INSERT INTO telemetry (device_id, ts, reading_hash, received_at, payload)
     SELECT $1, t, h, t, p FROM unnest($2::timestamptz[], $3::bigint[], $4::jsonb[]) AS u(t, h, p)`,
    [deviceId, readings.map(([ms]) => at(ms)), readings.map((_, i) => i), readings.map(([, p]) => typeof p === 'string' ? p : JSON.stringify(p))])
}

async function raw (url: string) {
  return await broker.app.http.inject({ method: 'GET', url, headers: { authorization: `Bearer ${TEST_ADMIN_TOKEN}` } })
}

test('count, min, max and avg per bucket of a nested field; non-numbers and missing fields are skipped', async (t) => {
  await api(broker.app, 'POST', '/v1/devices', { id: 'agg-1' })
  const t0 = MIDNIGHT - 2 * 60_000 // two minutes before midnight: buckets in both partitions
  await insert('agg-1', [
    [t0, { env: { temp: 20 } }],
    [t0 + 10_000, { env: { temp: 21.5 } }],
    [t0 + 20_000, { env: { temp: -3 } }],
    [t0 + 30_000, { env: { temp: '22' } }], // a string: skipped
    [t0 + 40_000, { env: { temp: null } }],
    [t0 + 50_000, { env: {} }],
    [t0 + 55_000, { env: { temp: { v: 1 } } }],
    [t0 + 60_000, { env: { temp: true } }], // bucket 2 holds no number: absent
    [t0 + 2 * 60_000, { env: { temp: 1 } }],
    [t0 + 2 * 60_000 + 1, { env: { temp: 2 } }],
    [t0 + 3 * 60_000 - 1, '{"env": {"temp": 9007199254740993}}'],
    [t0 + 5 * 60_000, { env: { temp: 7 } }] // after `to`
  ])
  const res = await api(broker.app, 'GET', `/v1/devices/agg-1/telemetry/aggregate?field=env.temp&bucket=1m&from=${at(t0)}&to=${at(t0 + 5 * 60_000)}`)
  t.is(res.status, 200, JSON.stringify(res.body))
  t.is(res.body.field, 'env.temp')
  t.is(res.body.bucket, '1m')
  t.is(res.body.from, at(t0))
  t.is(res.body.to, at(t0 + 5 * 60_000))
  t.deepEqual(res.body.items.map((b: { start: string, count: number, min: number, max: number }) => [b.start, b.count, b.min, b.max]), [
    [at(t0), 3, -3, 21.5],
    [at(t0 + 2 * 60_000), 3, 1, 2 ** 53] // JSON.parse rounds 9007199254740993; the text is checked below
  ])
  t.is(res.body.items[0].avg, 38.5 / 3)
  // Exact numbers: the largest value comes back digit for digit, and the
  // average is the exact decimal (PostgreSQL numeric), not a double's.
  const text = (await raw(`/v1/devices/agg-1/telemetry/aggregate?field=env.temp&from=${at(t0)}&to=${at(t0 + 5 * 60_000)}`)).body
  t.true(text.includes('"max":9007199254740993'), text)
  t.true(text.includes('"avg":3002399751580332'), text) // (1 + 2 + 9007199254740993) / 3
  t.true(text.includes('"avg":12.8333333333333333}'), text) // numeric's 16 digits after the point, not a double's 12.833333333333334
})

test('buckets of 1h and 1d start on whole UTC hours and days; a missing range means the last 24 hours', async (t) => {
  await api(broker.app, 'POST', '/v1/devices', { id: 'agg-2' })
  // One reading every 10 minutes over the 24 hours before now.
  const now = Date.now()
  const readings: Array<[number, unknown]> = []
  for (let ms = now - DAY + 60_000; ms < now; ms += 600_000) readings.push([ms, { temp: 1 }])
  await insert('agg-2', readings)
  const hours = await api(broker.app, 'GET', '/v1/devices/agg-2/telemetry/aggregate?field=temp&bucket=1h')
  t.is(hours.status, 200, JSON.stringify(hours.body))
  t.is(Date.parse(hours.body.to) - Date.parse(hours.body.from), DAY)
  t.true(Math.abs(Date.parse(hours.body.to) - Date.now()) < 60_000)
  t.is(hours.body.items.reduce((n: number, b: { count: number }) => n + b.count, 0), readings.length)
  for (const b of hours.body.items) t.is(Date.parse(b.start) % 3_600_000, 0, b.start)
  t.true(hours.body.items.length >= 24 && hours.body.items.length <= 25)
  const days = await api(broker.app, 'GET', `/v1/devices/agg-2/telemetry/aggregate?field=temp&bucket=1d&from=${at(MIDNIGHT - DAY)}&to=${at(MIDNIGHT + DAY)}`)
  t.true(days.body.items.length >= 1 && days.body.items.length <= 2)
  for (const b of days.body.items) t.is(Date.parse(b.start) % DAY, 0, b.start)
  t.is(days.body.items.reduce((n: number, b: { count: number }) => n + b.count, 0), readings.length)
  // A range over days without partitions (long gone, or far ahead) is simply empty.
  const empty = await api(broker.app, 'GET', '/v1/devices/agg-2/telemetry/aggregate?field=temp&bucket=1d&from=2001-01-01T00:00:00Z&to=2001-02-01T00:00:00Z')
  t.is(empty.status, 200)
  t.deepEqual(empty.body.items, [])
})

test('bad input: 400 with a reason; an unknown device is 404; read scope is enough', async (t) => {
  await api(broker.app, 'POST', '/v1/devices', { id: 'agg-3' })
  const get = (q: string, id = 'agg-3') => api(broker.app, 'GET', `/v1/devices/${id}/telemetry/aggregate?${q}`)
  for (const field of ['', 'a..b', '.a', 'a.', 'a b', 'a/b', "a'b", '$.temp', 'a.b.c.d.e.f.g.h.i', 'x'.repeat(65)]) {
    const res = await get(`field=${encodeURIComponent(field)}`)
    t.is(res.status, 400, `field ${JSON.stringify(field)}`)
    t.is(res.body.code, 'invalid_request')
    t.regex(res.body.detail, /field/)
  }
  t.is((await get('field=a.b.c.d.e.f.g.h')).status, 200, 'eight levels are allowed')
  t.is((await get('field=sensor-1.0.value_x')).status, 200)
  t.is((await get('')).status, 400, 'field is required')
  t.is((await get('field=temp&bucket=2m')).body.code, 'invalid_request')
  t.is((await get('field=temp&from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z')).body.code, 'invalid_range')
  t.is((await get('field=temp&from=2026-01-01T00:00:00Z&to=2026-01-01T00:00:00Z')).body.code, 'invalid_range')
  t.is((await get('field=temp&from=2999-01-01T00:00:00Z')).body.code, 'invalid_range', '`to` defaults to now')
  // Two days in 10 s buckets: 17,280 > 10,000.
  const wide = await get('field=temp&bucket=10s&from=2026-01-01T00:00:00Z&to=2026-01-03T00:00:00Z')
  t.is(wide.status, 400)
  t.is(wide.body.code, 'too_many_buckets')
  t.regex(wide.body.detail, /17280 buckets.*at most 10000/)
  t.is((await get('field=temp&bucket=10s&from=2026-01-01T00:00:00Z&to=2026-01-02T00:00:00Z')).status, 200, 'a day in 10 s buckets is 8,640')
  t.is((await get('field=temp&bucket=1m&cursor=x')).status, 400, 'unknown parameters are refused')
  const missing = await get('field=temp', 'agg-nobody')
  t.is(missing.status, 404)
  t.is(missing.body.code, 'not_found')
  const reader = (await api(broker.app, 'POST', '/v1/tokens', { name: 'agg-reader', scopes: ['read'] })).body.token as string
  t.is((await api(broker.app, 'GET', '/v1/devices/agg-3/telemetry/aggregate?field=temp', undefined, reader)).status, 200)
  t.is((await api(broker.app, 'GET', '/v1/devices/agg-3/telemetry/aggregate?field=temp', undefined, null)).status, 401)
})

interface PlanNode { 'Node Type': string, 'Relation Name'?: string, 'Index Name'?: string, Plans?: PlanNode[] }
const nodes = (n: PlanNode): PlanNode[] => [n, ...(n.Plans ?? []).flatMap(nodes)]

test('EXPLAIN: a 24 h range reads only its two partitions, each through its (device_id, ts) index', async (t) => {
  // A fleet: the device is one of 101 with a reading a minute over two days,
  // as it would be in production (alone in the table, reading it whole
  // would be the cheaper plan, and PostgreSQL would rightly choose that).
  await broker.app.pool.query(
    `INSERT INTO telemetry (device_id, ts, reading_hash, received_at, payload)
     SELECT 'agg-fleet-' || d, t, 0, t, jsonb_build_object('temp', m % 40)
       FROM generate_series(0, 100) d, generate_series(0, 2 * 1440 - 1) m,
            LATERAL (SELECT $1::timestamptz + make_interval(mins => m) AS t) x`, [at(MIDNIGHT - DAY)])
  await broker.app.pool.query('ANALYZE telemetry')
  const explain = async (from: number, to: number) => {
    const q = aggregateQuery('agg-fleet-7', { path: ['temp'], bucket: '1m', from: at(from), to: at(to) })
    const { rows } = await broker.app.pool.query<{ 'QUERY PLAN': Array<{ Plan: PlanNode }> }>({ text: 'EXPLAIN (FORMAT JSON) ' + q.text, values: q.values })
    return nodes(rows[0]!['QUERY PLAN'][0]!.Plan)
  }
  const check = (plan: PlanNode[], partitions: string[]) => {
    const scans = plan.filter((n) => n['Relation Name'] !== undefined || n['Index Name'] !== undefined)
    const detail = JSON.stringify(scans)
    t.deepEqual([...new Set(scans.filter((n) => n['Relation Name']).map((n) => n['Relation Name']))].sort(), partitions, detail)
    t.false(scans.some((n) => n['Node Type'] === 'Seq Scan'), detail)
    // Each partition through its primary key (device_id, ts, reading_hash):
    // an index scan, or a bitmap built from it.
    const indexes = scans.filter((n) => n['Index Name']).map((n) => n['Index Name'])
    t.deepEqual([...new Set(indexes)].sort(), partitions.map((p) => `${p}_pkey`), detail)
  }
  // 24 h from noon to noon: yesterday's and today's partitions, not the three ahead.
  check(await explain(MIDNIGHT - DAY / 2, MIDNIGHT + DAY / 2), [partition(MIDNIGHT - DAY), partition(MIDNIGHT)])
  // Within one day: one partition.
  check(await explain(MIDNIGHT + 3_600_000, MIDNIGHT + 7_200_000), [partition(MIDNIGHT)])
  // And the answer over the same data is right: 1,440 readings, one per minute bucket.
  await api(broker.app, 'POST', '/v1/devices', { id: 'agg-fleet-7' })
  const res = await api(broker.app, 'GET', `/v1/devices/agg-fleet-7/telemetry/aggregate?field=temp&from=${at(MIDNIGHT - DAY / 2)}&to=${at(MIDNIGHT + DAY / 2)}`)
  t.is(res.status, 200, JSON.stringify(res.body))
  t.is(res.body.items.length, 1440)
  t.true(res.body.items.every((b: { count: number }) => b.count === 1))
})

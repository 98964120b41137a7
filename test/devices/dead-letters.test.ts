// GET /v1/dead-letters (issue 13): refused messages with their raw bytes and
// reason, filtered by device, reason and time, newest first across pages,
// with counts per reason over the same filters, read through indexes.
import test from 'ava'
import { startTestBroker, connectDevice, api, type TestBroker } from '../helpers/broker.js'
import { countsQuery } from '../../devices/dead-letter-store.js'

let broker: TestBroker
test.before(async () => { broker = await startTestBroker({ API_RATE_LIMIT_PER_MINUTE: 100_000 }) })
test.after.always(async () => { await broker?.close(); await broker?.db.drop() })

interface Seed { deviceId: string | null, reason: string, at: string, payload: Buffer, detail?: string }

async function seed (rows: Seed[]): Promise<void> {
  await broker.app.pool.query(
    `INSERT INTO dead_letters (device_id, topic, payload, reason, detail, received_at)
     SELECT d, coalesce('devices/' || d || '/telemetry', 'unknown'), p, r, x, a FROM unnest($1::text[], $2::bytea[], $3::text[], $4::text[], $5::timestamptz[]) AS u(d, p, r, x, a)`,
    [rows.map((r) => r.deviceId), rows.map((r) => r.payload), rows.map((r) => r.reason), rows.map((r) => r.detail ?? null), rows.map((r) => r.at)])
}

/** Every item of a listing, following nextCursor. */
async function all (query: string, limit: number) {
  const items: any[] = [] // eslint-disable-line @typescript-eslint/no-explicit-any
  let cursor: string | null = null
  let pages = 0
  do {
    const res = await api(broker.app, 'GET', `/v1/dead-letters?${query}&limit=${limit}${cursor ? `&cursor=${cursor}` : ''}`)
    if (res.status !== 200) throw new Error(`${res.status} ${JSON.stringify(res.body)}`)
    items.push(...res.body.items)
    cursor = res.body.nextCursor
    if (++pages > 1000) throw new Error('paging does not end')
  } while (cursor)
  return items
}

test('a message refused over MQTT is listed with its exact bytes, reason and device', async (t) => {
  const dev = (await api(broker.app, 'POST', '/v1/devices', { id: 'dl-mqtt' })).body
  const client = await connectDevice(broker.url, dev.id, dev.secret)
  const bytes = Buffer.from([0x7b, 0x22, 0x74, 0x22, 0x3a, 0xff, 0xfe, 0x00, 0x7d]) // '{"t":' then bytes that are not UTF-8
  await client.publishAsync('devices/dl-mqtt/telemetry', bytes, { qos: 1 }) // PUBACK once the dead letter is stored
  await client.endAsync()
  const res = await api(broker.app, 'GET', '/v1/dead-letters?deviceId=dl-mqtt')
  t.is(res.status, 200)
  t.is(res.body.items.length, 1)
  const [item] = res.body.items
  t.deepEqual(Object.keys(item).sort(), ['detail', 'deviceId', 'id', 'payloadBase64', 'reason', 'receivedAt', 'topic'])
  t.is(item.deviceId, 'dl-mqtt')
  t.is(item.topic, 'devices/dl-mqtt/telemetry')
  t.is(item.reason, 'invalid_json')
  t.true(Buffer.from(item.payloadBase64, 'base64').equals(bytes), 'the raw bytes, not a UTF-8 rendering of them')
  t.regex(item.id, /^\d+$/)
  t.true(Math.abs(Date.parse(item.receivedAt) - Date.now()) < 60_000)
  t.deepEqual(res.body.countsByReason, { invalid_json: 1 })
  t.is(res.body.nextCursor, null)
})

test('newest first across pages: every dead letter once, ties on the same time included', async (t) => {
  const at = '2026-03-01T10:00:00.000Z'
  // 7 share one received_at (one batch does), 5 more at other times.
  await seed([
    ...Array.from({ length: 7 }, (_, i) => ({ deviceId: 'dl-page', reason: 'invalid_shape', at, payload: Buffer.from(`tie-${i}`) })),
    ...Array.from({ length: 5 }, (_, i) => ({ deviceId: 'dl-page', reason: 'too_deep', at: `2026-03-01T0${i}:00:00.000Z`, payload: Buffer.from(`t-${i}`) }))
  ])
  const items = await all('deviceId=dl-page', 3)
  t.is(items.length, 12)
  t.is(new Set(items.map((i) => i.id)).size, 12, 'no dead letter twice')
  for (let i = 1; i < items.length; i++) {
    const [a, b] = [items[i - 1], items[i]]
    const newerOrTie = Date.parse(a.receivedAt) > Date.parse(b.receivedAt) || (a.receivedAt === b.receivedAt && BigInt(a.id) > BigInt(b.id))
    t.true(newerOrTie, `item ${i} is older than item ${i - 1}`)
  }
  t.is(items[0].receivedAt, at)
  t.is(items.at(-1).receivedAt, '2026-03-01T00:00:00.000Z')
  // One page of all 12 is the same list.
  t.deepEqual((await all('deviceId=dl-page', 100)).map((i) => i.id), items.map((i) => i.id))
})

test('filters by device, reason and time range; countsByReason counts all matching pages, per reason', async (t) => {
  const payload = Buffer.from('{}')
  await seed([
    { deviceId: 'dl-f1', reason: 'invalid_json', at: '2026-04-01T00:00:00Z', payload },
    { deviceId: 'dl-f1', reason: 'invalid_json', at: '2026-04-01T01:00:00Z', payload },
    { deviceId: 'dl-f1', reason: 'too_deep', at: '2026-04-01T02:00:00Z', payload },
    { deviceId: 'dl-f1', reason: 'ts_out_of_window', at: '2026-04-02T00:00:00Z', payload },
    { deviceId: 'dl-f2', reason: 'invalid_json', at: '2026-04-01T01:30:00Z', payload },
    { deviceId: null, reason: 'invalid_json', at: '2026-04-01T01:45:00Z', payload }
  ])
  const get = async (q: string) => {
    const res = await api(broker.app, 'GET', `/v1/dead-letters?${q}`)
    t.is(res.status, 200, JSON.stringify(res.body))
    return res.body
  }
  let page = await get('deviceId=dl-f1&limit=1')
  t.is(page.items.length, 1)
  t.is(page.items[0].reason, 'ts_out_of_window')
  t.deepEqual(page.countsByReason, { invalid_json: 2, too_deep: 1, ts_out_of_window: 1 }, 'counts are over every page')
  page = await get('deviceId=dl-f1&reason=invalid_json')
  t.deepEqual(page.items.map((i: { receivedAt: string }) => i.receivedAt), ['2026-04-01T01:00:00.000Z', '2026-04-01T00:00:00.000Z'])
  t.deepEqual(page.countsByReason, { invalid_json: 2 })
  // from inclusive, to exclusive
  page = await get('from=2026-04-01T01:00:00Z&to=2026-04-02T00:00:00Z')
  t.deepEqual(page.items.map((i: { deviceId: string | null, reason: string }) => `${i.deviceId}/${i.reason}`), ['dl-f1/too_deep', 'null/invalid_json', 'dl-f2/invalid_json', 'dl-f1/invalid_json'])
  t.deepEqual(page.countsByReason, { invalid_json: 3, too_deep: 1 })
  page = await get('reason=invalid_json&from=2026-04-01T00:00:00%2B00:00&to=2026-04-01T03:00:00Z&limit=2')
  t.is(page.items.length, 2)
  t.deepEqual(page.countsByReason, { invalid_json: 4 })
  t.truthy(page.nextCursor)
  // nothing matches: empty, with empty counts
  page = await get('deviceId=dl-nobody')
  t.deepEqual(page, { items: [], nextCursor: null, countsByReason: {} })
})

test('read scope is enough; without a token 401; bad input is 400 with a reason', async (t) => {
  const reader = (await api(broker.app, 'POST', '/v1/tokens', { name: 'dl-reader', scopes: ['read'] })).body.token as string
  t.is((await api(broker.app, 'GET', '/v1/dead-letters', undefined, reader)).status, 200)
  t.is((await api(broker.app, 'GET', '/v1/dead-letters', undefined, null)).status, 401)
  const bad = async (q: string, code: string) => {
    const res = await api(broker.app, 'GET', `/v1/dead-letters?${q}`)
    t.is(res.status, 400, q)
    t.is(res.body.code, code, q)
    t.regex(String(res.headers['content-type']), /^application\/problem\+json/)
  }
  await bad('from=2026-04-02T00:00:00Z&to=2026-04-01T00:00:00Z', 'invalid_range')
  await bad('cursor=bm90LWEtY3Vyc29y', 'invalid_cursor')
  await bad(`cursor=${Buffer.from(JSON.stringify(['2026-02-30 10:00:00+00', '1'])).toString('base64url')}`, 'invalid_cursor')
  await bad('limit=101', 'invalid_request') // a page of 1,000 payloads of 64 KiB would be 90 MB
  await bad('reason=DROP TABLE', 'invalid_request')
  await bad('deviceId=a/b', 'invalid_request')
  await bad('from=yesterday', 'invalid_request')
  await bad('device=dl-f1', 'invalid_request') // a misspelt filter must not list everything
})

test('the counts and the pages read index ranges, not the table (EXPLAIN)', async (t) => {
  // Enough dead letters over 100 days that reading the table would cost more than an index range.
  await broker.app.pool.query(
    `INSERT INTO dead_letters (device_id, topic, payload, reason, received_at)
     SELECT 'dl-bulk-' || (i % 200), 'devices/x/telemetry', '\\x7b7d'::bytea, (ARRAY['invalid_json', 'invalid_shape', 'too_deep'])[1 + i % 3],
            '2025-01-01T00:00:00Z'::timestamptz + make_interval(secs => i * 172.8)
       FROM generate_series(1, 50000) i`)
  await broker.app.pool.query('VACUUM ANALYZE dead_letters')
  const plan = async (q: { text: string, values: unknown[] }) => {
    const { rows } = await broker.app.pool.query<{ 'QUERY PLAN': unknown }>({ text: 'EXPLAIN (FORMAT JSON) ' + q.text, values: q.values })
    return JSON.stringify(rows[0]!['QUERY PLAN'])
  }
  const cases = [
    { filter: { from: '2025-02-01T00:00:00Z', to: '2025-02-02T00:00:00Z' }, index: 'dead_letters_received_id_idx' },
    { filter: { deviceId: 'dl-bulk-7' }, index: 'dead_letters_device_received_id_idx' },
    { filter: { deviceId: 'dl-bulk-7', from: '2025-02-01T00:00:00Z', to: '2025-03-01T00:00:00Z' }, index: 'dead_letters_device_received_id_idx' },
    { filter: { reason: 'too_deep', from: '2025-02-01T00:00:00Z', to: '2025-02-03T00:00:00Z' }, index: 'dead_letters_reason_received_id_idx' }
  ]
  for (const { filter, index } of cases) {
    const p = await plan(countsQuery(filter))
    t.true(p.includes(`"Index Name":"${index}"`), `${JSON.stringify(filter)}: ${p}`)
    t.false(p.includes('"Seq Scan"'), `${JSON.stringify(filter)}: ${p}`)
  }
  // And the counts are right on this volume.
  const res = await api(broker.app, 'GET', '/v1/dead-letters?from=2025-02-01T00:00:00Z&to=2025-02-02T00:00:00Z&limit=1')
  t.is(Object.values(res.body.countsByReason as Record<string, number>).reduce((a, b) => a + b, 0), 500)
})

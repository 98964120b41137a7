// GET /v1/devices/{id}/telemetry serves each reading exactly as PostgreSQL
// stored it: no trip through JavaScript numbers, and no stored reading can
// make a page fail.
import test from 'ava'
import { startTestBroker, connectDevice, api, TEST_ADMIN_TOKEN, type TestBroker } from '../helpers/broker.js'

let broker: TestBroker
test.before(async () => { broker = await startTestBroker({ API_RATE_LIMIT_PER_MINUTE: 100_000 }) })
test.after.always(async () => { await broker?.close(); await broker?.db.drop() })

async function rawGet (url: string) {
  return await broker.app.http.inject({ method: 'GET', url, headers: { authorization: `Bearer ${TEST_ADMIN_TOKEN}` } })
}

/** What PostgreSQL holds for a device's readings, as text, in time order. */
async function storedTexts (deviceId: string): Promise<string[]> {
  const { rows } = await broker.app.pool.query<{ t: string }>('SELECT payload::text AS t FROM telemetry WHERE device_id = $1 ORDER BY ts, reading_hash', [deviceId])
  return rows.map((r) => r.t)
}

test('numbers JavaScript cannot hold come back digit for digit (readings inserted with SQL)', async (t) => {
  await api(broker.app, 'POST', '/v1/devices', { id: 'exact-sql' })
  await broker.app.pool.query(
    'INSERT INTO telemetry (device_id, ts, reading_hash, received_at, payload) VALUES (\'exact-sql\', now(), 1, now(), $1)',
    ['{"big": 9007199254740993, "wide": 123456789012345678901234567890, "huge": 1e400, "tiny": 1e-400, "scaled": 1.50}'])
  const res = await rawGet('/v1/devices/exact-sql/telemetry')
  t.is(res.statusCode, 200)
  t.regex(String(res.headers['content-type']), /^application\/json/)
  const [stored] = await storedTexts('exact-sql')
  t.true(res.body.includes(`"payload":${stored!}`), 'the payload is the stored jsonb text, spliced in')
  t.true(res.body.includes('9007199254740993'))
  t.false(res.body.includes('9007199254740992'))
  t.true(res.body.includes('123456789012345678901234567890'))
  t.false(res.body.includes('e+29'))
  t.true(res.body.includes('"huge": 1' + '0'.repeat(400)), '1e400 as PostgreSQL normalises it, not null')
  t.false(res.body.includes('"huge": null'))
  t.true(res.body.includes('"tiny": 0.' + '0'.repeat(399) + '1'))
  t.true(res.body.includes('"scaled": 1.50'))
  // Still one JSON document of the documented shape.
  const page = JSON.parse(res.body)
  t.deepEqual(Object.keys(page), ['items', 'nextCursor'])
  t.deepEqual(Object.keys(page.items[0]), ['ts', 'receivedAt', 'payload'])
  t.is(page.nextCursor, null)
})

test('numbers sent over MQTT come back as the device sent them', async (t) => {
  const dev = (await api(broker.app, 'POST', '/v1/devices', { id: 'exact-mqtt' })).body
  const c = await connectDevice(broker.url, dev.id, dev.secret)
  await c.publishAsync('devices/exact-mqtt/telemetry', '{"counter": 18446744073709551615, "ratio": 0.1000000000000000055511151231257827}', { qos: 1 })
  await c.endAsync()
  const res = await rawGet('/v1/devices/exact-mqtt/telemetry')
  t.is(res.statusCode, 200)
  t.true(res.body.includes('18446744073709551615'))
  t.true(res.body.includes('0.1000000000000000055511151231257827'))
  t.true(res.body.includes(`"payload":${(await storedTexts('exact-mqtt'))[0]!}`))
})

test('a reading nested 10,000 levels deep does not break its page: 200 with the reading in it', async (t) => {
  await api(broker.app, 'POST', '/v1/devices', { id: 'exact-deep' })
  const deep = '{"deep": ' + '['.repeat(10_000) + ']'.repeat(10_000) + '}'
  await broker.app.pool.query(
    `INSERT INTO telemetry (device_id, ts, reading_hash, received_at, payload) VALUES
       ('exact-deep', now() - interval '1 second', 1, now(), '{"before": true}'),
       ('exact-deep', now(), 2, now(), $1),
       ('exact-deep', now() + interval '1 second', 3, now(), '{"after": true}')`, [deep])
  const res = await rawGet('/v1/devices/exact-deep/telemetry')
  t.is(res.statusCode, 200, res.body.slice(0, 300))
  t.true(res.body.includes('['.repeat(10_000) + ']'.repeat(10_000)))
  t.regex(res.body, /"before": true.*"after": true/s)
  // Pagination across it still works.
  const first = JSON.parse((await rawGet('/v1/devices/exact-deep/telemetry?limit=1')).body)
  const second = await rawGet(`/v1/devices/exact-deep/telemetry?limit=1&cursor=${first.nextCursor}`)
  t.is(second.statusCode, 200)
  t.true(second.body.includes('['.repeat(10_000)))
})

test('the OpenAPI document still describes the page of readings', async (t) => {
  const doc = (await api(broker.app, 'GET', '/openapi.json', undefined, null)).body
  const schema = doc.paths['/v1/devices/{id}/telemetry'].get.responses['200'].content['application/json'].schema
  t.deepEqual(Object.keys(schema.properties), ['items', 'nextCursor'])
  t.deepEqual(Object.keys(schema.properties.items.items.properties), ['ts', 'receivedAt', 'payload'])
})

import test from 'ava'
import { T0, iso } from '../helpers/time.js'
import { startTestBroker, connectDevice, connackCode, api, type TestBroker } from '../helpers/broker.js'
import { waitFor } from '../helpers/wait.js'

let broker: TestBroker
test.before(async () => { broker = await startTestBroker({ API_RATE_LIMIT_PER_MINUTE: 100_000 }) })
test.after.always(async () => { await broker?.close(); await broker?.db.drop() })

test('POST /v1/devices returns the secret once and the device can connect with it', async (t) => {
  const r = await api(broker.app, 'POST', '/v1/devices', { id: 'reg-1', name: 'Boiler', labels: { site: 'berlin' } })
  t.is(r.status, 201)
  t.is(r.body.id, 'reg-1')
  const client = await connectDevice(broker.url, r.body.id, r.body.secret)
  t.true(client.connected)
  await client.endAsync()
  const got = await api(broker.app, 'GET', '/v1/devices/reg-1')
  t.is(got.status, 200)
  t.is(got.body.name, 'Boiler')
  t.deepEqual(got.body.labels, { site: 'berlin' })
  t.false('secret' in got.body)
  t.false(JSON.stringify(got.body).includes(r.body.secret))
})

test('an id is generated when absent', async (t) => {
  const r = await api(broker.app, 'POST', '/v1/devices', {})
  t.is(r.status, 201)
  t.regex(r.body.id, /^dev-[0-9a-f]{16}$/)
})

test('409 on an existing id, 400 on an id that is not a topic level, both as problem+json', async (t) => {
  await api(broker.app, 'POST', '/v1/devices', { id: 'reg-dup' })
  const dup = await api(broker.app, 'POST', '/v1/devices', { id: 'reg-dup' })
  t.is(dup.status, 409)
  t.is(dup.body.code, 'device_exists')
  t.regex(String(dup.headers['content-type']), /application\/problem\+json/)
  for (const id of ['a/b', '+', '#', '$x', '', '..']) {
    const bad = await api(broker.app, 'POST', '/v1/devices', { id })
    t.is(bad.status, 400, id)
    t.is(bad.body.code, 'invalid_request', id)
  }
})

test('bad bodies get 400 without internals', async (t) => {
  const res = await broker.app.http.inject({ method: 'POST', url: '/v1/devices', headers: { authorization: 'Bearer test-admin-token-0123456789', 'content-type': 'application/json' }, payload: '{"id": ' })
  t.is(res.statusCode, 400)
  const body = JSON.parse(res.body)
  t.is(body.code, 'invalid_request')
  t.false(/at |\.ts:|node_modules/.test(res.body))
  const extra = await api(broker.app, 'POST', '/v1/devices', { id: 'x1', bogus: true })
  t.is(extra.status, 400)
})

test('list filters by label selector and presence, paginated with an opaque cursor', async (t) => {
  for (let i = 0; i < 5; i++) await api(broker.app, 'POST', '/v1/devices', { id: `list-${i}`, labels: { site: i < 3 ? 'paris' : 'rome', tier: 'edge' } })
  const first = await api(broker.app, 'GET', '/v1/devices?labels=site=paris,tier=edge&limit=2')
  t.is(first.status, 200)
  t.deepEqual(first.body.items.map((d: { id: string }) => d.id), ['list-0', 'list-1'])
  t.truthy(first.body.nextCursor)
  const second = await api(broker.app, 'GET', `/v1/devices?labels=site=paris,tier=edge&limit=2&cursor=${first.body.nextCursor}`)
  t.deepEqual(second.body.items.map((d: { id: string }) => d.id), ['list-2'])
  t.is(second.body.nextCursor, null)
  t.is((await api(broker.app, 'GET', '/v1/devices?cursor=garbage')).body.code, 'invalid_cursor')
  t.is((await api(broker.app, 'GET', '/v1/devices?limit=100000')).status, 400)
  t.is((await api(broker.app, 'GET', '/v1/devices?labels=nonsense')).body.code, 'invalid_selector')

  const dev = await api(broker.app, 'POST', '/v1/devices', { id: 'list-online', labels: { site: 'oslo' } })
  const c = await connectDevice(broker.url, dev.body.id, dev.body.secret)
  await waitFor(async () => (await api(broker.app, 'GET', '/v1/devices?labels=site=oslo&online=true')).body.items.length === 1, { what: 'online filter' })
  t.is((await api(broker.app, 'GET', '/v1/devices?labels=site=oslo&online=false')).body.items.length, 0)
  await c.endAsync()
})

test('PATCH changes name and labels; disabled disconnects and refuses the device', async (t) => {
  const dev = (await api(broker.app, 'POST', '/v1/devices', { id: 'patch-1' })).body
  const client = await connectDevice(broker.url, dev.id, dev.secret)
  const closed = new Promise<void>((resolve) => client.once('close', () => resolve()))
  const r = await api(broker.app, 'PATCH', '/v1/devices/patch-1', { name: 'renamed', labels: { a: 'b' }, disabled: true })
  t.is(r.status, 200)
  t.is(r.body.name, 'renamed')
  t.true(r.body.disabled)
  await closed
  t.is(await connackCode(broker.url, { clientId: dev.id, username: dev.id, password: dev.secret }), 5)
  t.is((await api(broker.app, 'PATCH', '/v1/devices/nope', { name: 'x' })).status, 404)
  t.is((await api(broker.app, 'PATCH', '/v1/devices/patch-1', {})).status, 400)
  client.end(true)
})

test('DELETE disconnects an online device first; 404 afterwards', async (t) => {
  const dev = (await api(broker.app, 'POST', '/v1/devices', { id: 'del-1' })).body
  const client = await connectDevice(broker.url, dev.id, dev.secret)
  const closed = new Promise<void>((resolve) => client.once('close', () => resolve()))
  t.is((await api(broker.app, 'DELETE', '/v1/devices/del-1')).status, 204)
  await closed
  t.is((await api(broker.app, 'GET', '/v1/devices/del-1')).status, 404)
  t.is(await connackCode(broker.url, { clientId: dev.id, username: dev.id, password: dev.secret }), 4)
  client.end(true)
})

test('secret rotation: the old secret stops working at once, the new one works', async (t) => {
  const dev = (await api(broker.app, 'POST', '/v1/devices', { id: 'rot-1' })).body
  const c = await connectDevice(broker.url, dev.id, dev.secret)
  await c.endAsync()
  const r = await api(broker.app, 'POST', '/v1/devices/rot-1/secret')
  t.is(r.status, 200)
  t.not(r.body.secret, dev.secret)
  t.is(await connackCode(broker.url, { clientId: dev.id, username: dev.id, password: dev.secret }), 4)
  const again = await connectDevice(broker.url, dev.id, r.body.secret)
  await again.endAsync()
})

test('bulk creation streams NDJSON credentials that work, and reports existing ids', async (t) => {
  await api(broker.app, 'POST', '/v1/devices', { id: 'bulk-3' })
  const res = await broker.app.http.inject({ method: 'POST', url: '/v1/devices/bulk', headers: { authorization: 'Bearer test-admin-token-0123456789' }, payload: { count: 50, idPrefix: 'bulk', labels: { fleet: 'b' } } })
  t.is(res.statusCode, 200)
  t.regex(String(res.headers['content-type']), /application\/x-ndjson/)
  const lines = res.body.trim().split('\n').map((l) => JSON.parse(l))
  t.is(lines.length, 50)
  t.deepEqual(lines.find((l) => l.id === 'bulk-3'), { id: 'bulk-3', error: 'device_exists' })
  const ok = lines.filter((l) => l.secret)
  t.is(ok.length, 49)
  const sample = ok[17]
  const c = await connectDevice(broker.url, sample.id, sample.secret)
  await c.endAsync()
  t.is((await api(broker.app, 'GET', '/v1/devices?labels=fleet=b&limit=1000')).body.items.length, 49)
})

test('telemetry reads: time order, from/to, pagination, validation', async (t) => {
  const dev = (await api(broker.app, 'POST', '/v1/devices', { id: 'tel-1' })).body
  const c = await connectDevice(broker.url, dev.id, dev.secret)
  const readings = Array.from({ length: 7 }, (_, i) => ({ ts: iso(T0 + (6 - i) * 1000), i }))
  await c.publishAsync('devices/tel-1/telemetry', JSON.stringify(readings), { qos: 1 })
  await c.endAsync()
  const p1 = await api(broker.app, 'GET', '/v1/devices/tel-1/telemetry?limit=3')
  t.deepEqual(p1.body.items.map((r: { payload: { i: number } }) => r.payload.i), [6, 5, 4])
  const p2 = await api(broker.app, 'GET', `/v1/devices/tel-1/telemetry?limit=3&cursor=${p1.body.nextCursor}`)
  t.deepEqual(p2.body.items.map((r: { payload: { i: number } }) => r.payload.i), [3, 2, 1])
  const ranged = await api(broker.app, 'GET', `/v1/devices/tel-1/telemetry?from=${iso(T0 + 2000)}&to=${iso(T0 + 4000)}`)
  t.deepEqual(ranged.body.items.map((r: { ts: string }) => r.ts), [iso(T0 + 2000), iso(T0 + 3000)])
  t.is((await api(broker.app, 'GET', '/v1/devices/tel-1/telemetry?from=yesterday')).status, 400)
  t.is((await api(broker.app, 'GET', '/v1/devices/tel-1/telemetry?from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z')).body.code, 'invalid_range')
  t.is((await api(broker.app, 'GET', '/v1/devices/nobody/telemetry')).status, 404)
})

test('OpenAPI document and docs UI are served', async (t) => {
  const doc = await api(broker.app, 'GET', '/openapi.json', undefined, null)
  t.is(doc.status, 200)
  t.is(doc.body.openapi.slice(0, 2), '3.')
  for (const path of ['/v1/devices', '/v1/devices/{id}/config', '/v1/devices/{id}/commands', '/v1/commands/{id}', '/v1/rollouts', '/v1/devices/{id}/telemetry', '/v1/tokens']) {
    t.truthy(doc.body.paths[path], path)
  }
  const ui = await broker.app.http.inject({ method: 'GET', url: '/docs/' })
  t.is(ui.statusCode, 200)
})

test('hostile inputs get 4xx, never 500: tampered cursors, bad UUIDs, values jsonb refuses, duplicate bulk ids', async (t) => {
  const forged = (key: unknown[]) => Buffer.from(JSON.stringify(key)).toString('base64url')
  await api(broker.app, 'POST', '/v1/devices', { id: 'hostile-1' })
  for (const url of [
    `/v1/devices/hostile-1/commands?cursor=${forged(['x', 'y'])}`,
    `/v1/devices/hostile-1/telemetry?cursor=${forged(['2026-01-01T00:00:00Z', '1e99'])}`,
    `/v1/devices?cursor=${forged([42])}`
  ]) {
    const r = await api(broker.app, 'GET', url)
    t.is(r.status, 400, url)
    t.is(r.body.code, 'invalid_cursor', url)
  }
  for (const url of ['/v1/commands/' + 'a'.repeat(36), '/v1/commands/' + '-'.repeat(36), '/v1/rollouts/' + 'f'.repeat(36)]) {
    t.is((await api(broker.app, 'GET', url)).status, 404, url)
  }
  const nul = await api(broker.app, 'PUT', '/v1/devices/hostile-1/config', { config: { s: 'a\u0000b' } })
  t.is(nul.status, 400)
  t.is((await api(broker.app, 'PUT', '/v1/devices/hostile-1/config', { config: {}, ifVersion: 3_000_000_000 })).status, 400)
  const bulk = await broker.app.http.inject({ method: 'POST', url: '/v1/devices/bulk', headers: { authorization: 'Bearer test-admin-token-0123456789' }, payload: { devices: [{ id: 'twice' }, { id: 'twice' }] } })
  const lines = bulk.body.trim().split('\n').map((l) => JSON.parse(l))
  t.is(lines.filter((l) => l.secret).length, 1)
  t.deepEqual(lines.find((l) => l.error), { id: 'twice', error: 'device_exists' })
})

// Bulk device actions (issue 13): POST /v1/devices/bulk-actions disables,
// enables or deletes devices named by ids or by a label selector, ends the
// MQTT sessions of the disabled and deleted ones as the single forms do,
// writes one audit entry with counts and one event per changed device. The
// streamed bulk creation (POST /v1/devices/bulk) keeps one audit entry with
// counts as well.
import test from 'ava'
import type { FleetEvent } from '../../devices/fleet-events.js'
import { startTestBroker, api, connectDevice, connackCode, TEST_ADMIN_TOKEN, type TestBroker } from '../helpers/broker.js'
import { waitFor } from '../helpers/wait.js'

let broker: TestBroker
test.before(async () => { broker = await startTestBroker({ API_RATE_LIMIT_PER_MINUTE: 100_000 }) })
test.after.always(async () => { await broker?.close(); await broker?.db.drop() })

async function devices (prefix: string, n: number, labels: Record<string, string>) {
  const out: Array<{ id: string, secret: string }> = []
  for (let i = 1; i <= n; i++) out.push((await api(broker.app, 'POST', '/v1/devices', { id: `${prefix}-${i}`, labels })).body)
  return out
}

const auditFor = async (requestId: string) => (await api(broker.app, 'GET', '/v1/audit?limit=1000')).body.items.filter((a: { requestId: string }) => a.requestId === requestId)

function deviceEvents (prefix: string) {
  const seen: FleetEvent[] = []
  const off = broker.app.events.subscribe((e) => { if (e.kind === 'device' && e.deviceId?.startsWith(prefix)) seen.push(e) })
  return { seen, off }
}

test('by ids: disable disconnects an online device and refuses it; again changes nothing; enable lets it back', async (t) => {
  const [one, two] = await devices('bk-ids', 3, { grp: 'bk-ids' })
  const client = await connectDevice(broker.url, one!.id, one!.secret)
  const closed = new Promise<void>((resolve) => client.once('close', () => resolve()))
  const ev = deviceEvents('bk-ids')
  const r = await api(broker.app, 'POST', '/v1/devices/bulk-actions', { action: 'disable', ids: ['bk-ids-1', 'bk-ids-2', 'bk-ids-nobody'] }, undefined, { 'x-request-id': 'bk-req-1' })
  t.is(r.status, 200)
  t.deepEqual(r.body, { action: 'disable', matched: 2, changed: 2 })
  await closed
  t.is(await connackCode(broker.url, { clientId: one!.id, username: one!.id, password: one!.secret }), 5)
  t.true((await api(broker.app, 'GET', '/v1/devices/bk-ids-2')).body.disabled)
  t.false((await api(broker.app, 'GET', '/v1/devices/bk-ids-3')).body.disabled)

  const entries = await auditFor('bk-req-1')
  t.is(entries.length, 1)
  t.like(entries[0], { action: 'device.bulk_disable', target: { type: 'device', id: null }, actor: { id: 'admin' }, after: { matched: 2, changed: 2 } })
  t.deepEqual(entries[0].before.ids, ['bk-ids-1', 'bk-ids-2', 'bk-ids-nobody'])

  const again = await api(broker.app, 'POST', '/v1/devices/bulk-actions', { action: 'disable', ids: ['bk-ids-1', 'bk-ids-2'] })
  t.deepEqual(again.body, { action: 'disable', matched: 2, changed: 0 })
  const enabled = await api(broker.app, 'POST', '/v1/devices/bulk-actions', { action: 'enable', ids: ['bk-ids-1', 'bk-ids-2', 'bk-ids-3'] })
  t.deepEqual(enabled.body, { action: 'enable', matched: 3, changed: 2 })
  const back = await connectDevice(broker.url, one!.id, one!.secret)
  t.true(back.connected)
  await back.endAsync()
  await waitFor(() => ev.seen.length >= 4)
  ev.off()
  t.deepEqual(ev.seen.map((e) => `${e.type} ${e.deviceId}`).sort(), ['disabled bk-ids-1', 'disabled bk-ids-2', 'enabled bk-ids-1', 'enabled bk-ids-2'])
  t.true(ev.seen.every((e) => /^\d+$/.test(e.id ?? '')))
  t.truthy(two)
  client.end(true)
})

test('by selector: delete disconnects the online devices, removes only the matching ones, one audit entry with counts', async (t) => {
  const list = await devices('bk-sel', 4, { grp: 'bk-sel', tier: 'edge' })
  await devices('bk-other', 2, { grp: 'bk-sel', tier: 'core' })
  const clients = await Promise.all(list.slice(0, 2).map((d) => connectDevice(broker.url, d.id, d.secret)))
  const closed = Promise.all(clients.map((c) => new Promise<void>((resolve) => c.once('close', () => resolve()))))
  const ev = deviceEvents('bk-sel-')
  const r = await api(broker.app, 'POST', '/v1/devices/bulk-actions', { action: 'delete', selector: 'grp=bk-sel,tier=edge' }, undefined, { 'x-request-id': 'bk-req-2' })
  t.deepEqual(r.body, { action: 'delete', matched: 4, changed: 4 })
  await closed
  for (const d of list) t.is((await api(broker.app, 'GET', `/v1/devices/${d.id}`)).status, 404)
  t.is(await connackCode(broker.url, { clientId: list[0]!.id, username: list[0]!.id, password: list[0]!.secret }), 4)
  const left = await api(broker.app, 'GET', '/v1/devices?selector=grp=bk-sel')
  t.deepEqual(left.body.items.map((d: { id: string }) => d.id), ['bk-other-1', 'bk-other-2'])
  const entries = await auditFor('bk-req-2')
  t.is(entries.length, 1)
  t.like(entries[0], { action: 'device.bulk_delete', before: { selector: 'grp=bk-sel,tier=edge' }, after: { matched: 4, changed: 4 } })
  await waitFor(() => ev.seen.length >= 4)
  ev.off()
  t.deepEqual(ev.seen.map((e) => `${e.type} ${e.deviceId}`).sort(), list.map((d) => `deleted ${d.id}`))
  for (const c of clients) c.end(true)
})

test('refused: both or neither of ids and selector, an empty selector, too many ids, a selector matching more than 100,000 devices', async (t) => {
  const bad = async (body: unknown) => {
    const r = await api(broker.app, 'POST', '/v1/devices/bulk-actions', body)
    t.is(r.status, 400, JSON.stringify(body).slice(0, 80))
    t.is(r.body.code, 'invalid_request')
    return r.body.detail as string
  }
  t.regex(await bad({ action: 'disable', ids: ['a'], selector: 'a=b' }), /exactly one of ids and selector/)
  t.regex(await bad({ action: 'disable' }), /exactly one of ids and selector/)
  t.regex(await bad({ action: 'delete', selector: ' ' }), /at least one label/)
  await bad({ action: 'delete', ids: Array.from({ length: 10_001 }, (_, i) => `x-${i}`) })
  await bad({ action: 'explode', ids: ['a'] })
  t.is((await api(broker.app, 'POST', '/v1/devices/bulk-actions', { action: 'delete', selector: 'bad label=x' })).body.code, 'invalid_selector')

  // 100,001 devices straight into the table (the API would take minutes).
  await broker.app.pool.query(`INSERT INTO devices (id, secret_hash, labels)
    SELECT 'bk-many-' || i, 'x', '{"grp": "bk-many"}' FROM generate_series(1, 100001) i`)
  try {
    t.regex(await bad({ action: 'disable', selector: 'grp=bk-many' }), /matches more than 100000 devices; narrow it/)
    t.is(Number((await broker.app.pool.query("SELECT count(*) AS n FROM devices WHERE labels @> '{\"grp\": \"bk-many\"}' AND disabled_at IS NOT NULL")).rows[0].n), 0)
  } finally {
    await broker.app.pool.query("DELETE FROM devices WHERE labels @> '{\"grp\": \"bk-many\"}'")
  }
})

test('read tokens cannot run bulk actions', async (t) => {
  const tok = (await api(broker.app, 'POST', '/v1/tokens', { name: 'bk-reader', scopes: ['read'] })).body
  const r = await api(broker.app, 'POST', '/v1/devices/bulk-actions', { action: 'delete', ids: ['a'] }, tok.token)
  t.is(r.status, 403)
})

test('bulk creation: one audit entry whose counts cover every committed chunk, and a created event per device', async (t) => {
  await api(broker.app, 'POST', '/v1/devices', { id: 'bk-make-7' })
  const ev = deviceEvents('bk-make-')
  const res = await broker.app.http.inject({
    method: 'POST',
    url: '/v1/devices/bulk',
    headers: { authorization: `Bearer ${TEST_ADMIN_TOKEN}`, 'x-request-id': 'bk-req-make' },
    payload: { count: 4500, idPrefix: 'bk-make' }
  })
  t.is(res.statusCode, 200)
  t.is(res.body.trim().split('\n').length, 4500)
  const entries = await auditFor('bk-req-make')
  t.is(entries.length, 1)
  t.like(entries[0], { action: 'device.bulk_create', target: { type: 'device', id: null }, after: { created: 4499, failed: 1 } })
  await waitFor(() => ev.seen.length >= 4499)
  ev.off()
  t.is(new Set(ev.seen.filter((e) => e.type === 'created').map((e) => e.deviceId)).size, 4499)
  t.false(ev.seen.some((e) => e.deviceId === 'bk-make-7'))
})

// Input outside bodies — label selectors, query parameters, cursors, the
// Idempotency-Key header — is refused with a clear 400 when it is ambiguous
// or cannot mean what the client thinks, instead of being half-used.
import test from 'ava'
import { startTestBroker, api, type TestBroker } from '../helpers/broker.js'

let broker: TestBroker
test.before(async () => {
  broker = await startTestBroker({ API_RATE_LIMIT_PER_MINUTE: 100_000 })
  await api(broker.app, 'POST', '/v1/devices', { id: 'sel-a', labels: { site: 'a', tier: 'edge' } })
  await api(broker.app, 'POST', '/v1/devices', { id: 'sel-b', labels: { site: 'b', tier: 'edge' } })
})
test.after.always(async () => { await broker?.close(); await broker?.db.drop() })

const forged = (key: unknown[]) => Buffer.from(JSON.stringify(key)).toString('base64url')

test('a label selector naming a key twice is 400 invalid_selector naming the key, when listing devices', async (t) => {
  for (const labels of ['site=a,site=b', 'site=b,tier=edge,site=b', 'site=a, site=a']) {
    const r = await api(broker.app, 'GET', `/v1/devices?labels=${encodeURIComponent(labels)}`)
    t.is(r.status, 400, labels)
    t.is(r.body.code, 'invalid_selector', labels)
    t.regex(r.body.detail, /"site" more than once/, labels)
  }
  // Each key once still selects as before.
  t.deepEqual((await api(broker.app, 'GET', '/v1/devices?labels=site=b,tier=edge')).body.items.map((d: { id: string }) => d.id), ['sel-b'])
})

test('a rollout whose selector names a key twice is refused, and no rollout is created', async (t) => {
  const r = await api(broker.app, 'POST', '/v1/rollouts', { selector: 'site=a,site=b', config: { v: 1 } })
  t.is(r.status, 400)
  t.is(r.body.code, 'invalid_selector')
  t.regex(r.body.detail, /"site"/)
  const { rows } = await broker.app.pool.query('SELECT count(*)::int AS n FROM rollouts')
  t.is(rows[0].n, 0)
  t.is((await api(broker.app, 'GET', '/v1/devices/sel-b/config')).body.desired, null, 'sel-b was not targeted')
})

test('unknown query parameters are 400, not ignored (a misspelt filter must not list or act on everything)', async (t) => {
  for (const url of ['/v1/devices?label=site=a', '/v1/devices?labels=site=a&onlin=true', '/v1/devices/sel-a/telemetry?since=2026-01-01T00:00:00Z', '/v1/devices/sel-a/commands?page=2', '/v1/commands/00000000-0000-4000-8000-000000000000?wait=5']) {
    const r = await api(broker.app, 'GET', url)
    t.is(r.status, 400, url)
    t.is(r.body.code, 'invalid_request', url)
    t.regex(r.body.detail, /additional properties/, url)
  }
})

test('cursors with impossible times or out-of-range numbers are 400 invalid_cursor', async (t) => {
  for (const url of [
    `/v1/devices/sel-a/telemetry?cursor=${forged(['2026-02-30 00:00:00+00', '1'])}`,
    `/v1/devices/sel-a/telemetry?cursor=${forged(['2026-13-01 00:00:00+00', '1'])}`,
    `/v1/devices/sel-a/telemetry?cursor=${forged(['2026-01-01 24:00:00+00', '1'])}`,
    `/v1/devices/sel-a/telemetry?cursor=${forged(['2026-01-01 00:00:00+99', '1'])}`,
    `/v1/devices/sel-a/telemetry?cursor=${forged(['0000-01-01 00:00:00+00', '1'])}`,
    `/v1/devices/sel-a/telemetry?cursor=${forged(['2026-01-01 00:00:00+00', '9999999999999999999'])}`,
    `/v1/devices/sel-a/commands?cursor=${forged(['2026-02-29T00:00:00Z', '00000000-0000-4000-8000-000000000000'])}`
  ]) {
    const r = await api(broker.app, 'GET', url)
    t.is(r.status, 400, url)
    t.is(r.body.code, 'invalid_cursor', url)
  }
  // A real cursor (and a leap day) still works.
  t.is((await api(broker.app, 'GET', `/v1/devices/sel-a/commands?cursor=${forged(['2028-02-29T00:00:00Z', '00000000-0000-4000-8000-000000000000'])}`)).status, 200)
  t.is((await api(broker.app, 'GET', `/v1/devices/sel-a/telemetry?cursor=${forged(['2026-01-01 00:00:00.123456+00', '-9223372036854775808'])}`)).status, 200)
})

test('a time PostgreSQL cannot hold is a 400 that names the parameter', async (t) => {
  const r = await api(broker.app, 'GET', '/v1/devices/sel-a/telemetry?from=0000-01-01T00:00:00Z')
  t.is(r.status, 400)
  t.is(r.body.code, 'invalid_request')
  t.regex(r.body.detail, /querystring\/from/)
})

test('an Idempotency-Key must be printable ASCII', async (t) => {
  for (const key of ['a\tb', 'a\u0001b', ' lead', 'trail ']) {
    const r = await api(broker.app, 'POST', '/v1/devices/sel-a/commands', { name: 'x' }, undefined, { 'idempotency-key': key })
    t.is(r.status, 400, JSON.stringify(key))
    t.is(r.body.code, 'invalid_request', JSON.stringify(key))
  }
  const first = await api(broker.app, 'POST', '/v1/devices/sel-a/commands', { name: 'x' }, undefined, { 'idempotency-key': 'retry-1 of "job"' })
  t.is(first.status, 202)
  const again = await api(broker.app, 'POST', '/v1/devices/sel-a/commands', { name: 'x' }, undefined, { 'idempotency-key': 'retry-1 of "job"' })
  t.is(again.status, 200)
  t.is(again.body.id, first.body.id)
})

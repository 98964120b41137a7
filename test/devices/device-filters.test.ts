// GET /v1/devices filters (issue 13): idPrefix, online, configState and the
// label selector, alone and together, with the cursor; the device resource's
// configState. (Their speed over 100,000 devices is measured by a script, not
// here; the plans they rely on are checked by EXPLAIN at the end.)
import test from 'ava'
import { startTestBroker, api, connectDevice, type TestBroker } from '../helpers/broker.js'
import { waitFor } from '../helpers/wait.js'

let broker: TestBroker
test.before(async () => {
  broker = await startTestBroker({ API_RATE_LIMIT_PER_MINUTE: 100_000 })
  // flt-a-1: in sync (online); flt-a-2: pending; flt-a-3: failed, then
  // pending again with a newer version; flt-b-1: none; flt_x: none (an
  // underscore, a LIKE wildcard, in its id).
  const secrets: Record<string, string> = {}
  for (const [id, labels] of [['flt-a-1', { fl: 'a' }], ['flt-a-2', { fl: 'a' }], ['flt-a-3', { fl: 'a' }], ['flt-b-1', { fl: 'b' }], ['flt_x', { fl: 'b' }], ['fltz', { fl: 'b' }]] as const) {
    secrets[id] = (await api(broker.app, 'POST', '/v1/devices', { id, labels })).body.secret
  }
  for (const id of ['flt-a-1', 'flt-a-2', 'flt-a-3']) await api(broker.app, 'PUT', `/v1/devices/${id}/config`, { config: { v: 1 } })
  const a1 = await connectDevice(broker.url, 'flt-a-1', secrets['flt-a-1']!)
  await a1.publishAsync('devices/flt-a-1/config/reported', JSON.stringify({ version: 1 }), { qos: 1 })
  const a3 = await connectDevice(broker.url, 'flt-a-3', secrets['flt-a-3']!)
  await a3.publishAsync('devices/flt-a-3/config/reported', JSON.stringify({ version: 1, status: 'failed', error: 'disk full' }), { qos: 1 })
  await a3.endAsync()
  online = a1
  await waitFor(async () => (await api(broker.app, 'GET', '/v1/devices/flt-a-1')).body.online === true && (await api(broker.app, 'GET', '/v1/devices/flt-a-3')).body.online === false, { what: 'presence' })
})
let online: { endAsync (): Promise<unknown> } | undefined
test.after.always(async () => { await online?.endAsync(); await broker?.close(); await broker?.db.drop() })

const ids = async (query: string): Promise<string[]> => {
  const r = await api(broker.app, 'GET', `/v1/devices?${query}`)
  if (r.status !== 200) throw new Error(`${query}: ${r.status} ${JSON.stringify(r.body)}`)
  return r.body.items.map((d: { id: string }) => d.id)
}

test('configState: none, in_sync, pending, failed; the device resource says which', async (t) => {
  t.deepEqual(await ids('idPrefix=flt&configState=in_sync'), ['flt-a-1'])
  t.deepEqual(await ids('idPrefix=flt&configState=pending'), ['flt-a-2'])
  t.deepEqual(await ids('idPrefix=flt&configState=failed'), ['flt-a-3'])
  t.deepEqual(await ids('idPrefix=flt&configState=none'), ['flt-b-1', 'flt_x', 'fltz'])
  const a3 = (await api(broker.app, 'GET', '/v1/devices/flt-a-3')).body
  t.is(a3.configState, 'failed')
  t.false(a3.config.inSync)
  t.is((await api(broker.app, 'GET', '/v1/devices/flt-a-1')).body.configState, 'in_sync')
  t.is((await api(broker.app, 'GET', '/v1/devices/flt-b-1')).body.configState, 'none')
  const listed = (await api(broker.app, 'GET', '/v1/devices?idPrefix=flt-a')).body.items
  t.deepEqual(listed.map((d: { configState: string }) => d.configState), ['in_sync', 'pending', 'failed'])
  t.is((await api(broker.app, 'GET', '/v1/devices?configState=broken')).status, 400)
})

test('the device resource, its filter and GET …/config agree on the state', async (t) => {
  await api(broker.app, 'POST', '/v1/devices', { id: 'fl2-r' })
  await api(broker.app, 'PUT', '/v1/devices/fl2-r/config', { config: { v: 1 } })
  t.deepEqual(await ids('idPrefix=fl2-&configState=pending'), ['fl2-r'])
  const state = (await api(broker.app, 'GET', '/v1/devices/fl2-r/config')).body
  t.is(state.state, (await api(broker.app, 'GET', '/v1/devices/fl2-r')).body.configState)
})

test('idPrefix: a prefix match where _ and % are literal characters', async (t) => {
  t.deepEqual(await ids('idPrefix=flt-a'), ['flt-a-1', 'flt-a-2', 'flt-a-3'])
  t.deepEqual(await ids('idPrefix=flt_'), ['flt_x'])
  t.deepEqual(await ids('idPrefix=flt%25'), [])
  t.deepEqual(await ids('idPrefix=flt-a-2'), ['flt-a-2'])
  t.deepEqual(await ids('idPrefix=nothing'), [])
  t.is((await api(broker.app, 'GET', `/v1/devices?idPrefix=${'x'.repeat(129)}`)).status, 400)
  t.is((await api(broker.app, 'GET', '/v1/devices?idPrefix=')).status, 400)
})

test('online=true|false', async (t) => {
  t.deepEqual(await ids('idPrefix=flt&online=true'), ['flt-a-1'])
  t.deepEqual(await ids('idPrefix=flt&online=false'), ['flt-a-2', 'flt-a-3', 'flt-b-1', 'flt_x', 'fltz'])
  t.is((await api(broker.app, 'GET', '/v1/devices?online=maybe')).status, 400)
})

test('filters combine with the selector (as labels or selector) and page with the cursor', async (t) => {
  t.deepEqual(await ids('selector=fl=a&configState=pending'), ['flt-a-2'])
  t.deepEqual(await ids('labels=fl=b&idPrefix=flt'), ['flt-b-1', 'flt_x', 'fltz'])
  t.deepEqual(await ids('selector=fl=a&online=false&idPrefix=flt-a'), ['flt-a-2', 'flt-a-3'])
  const both = await api(broker.app, 'GET', '/v1/devices?selector=fl=a&labels=fl=a')
  t.is(both.status, 400)
  t.regex(both.body.detail, /not both/)
  const pages: string[][] = []
  let cursor: string | null = null
  do {
    const r: { body: { items: Array<{ id: string }>, nextCursor: string | null } } = await api(broker.app, 'GET', `/v1/devices?idPrefix=flt&online=false&limit=2${cursor ? `&cursor=${cursor}` : ''}`)
    pages.push(r.body.items.map((d) => d.id))
    cursor = r.body.nextCursor
  } while (cursor)
  t.deepEqual(pages.flat(), ['flt-a-2', 'flt-a-3', 'flt-b-1', 'flt_x', 'fltz'])
  t.is(pages[0]!.length, 2)
})

test('EXPLAIN: a page filtered by id prefix, pending or failed config uses an index, not a scan of every device', async (t) => {
  // Enough rows for the planner to prefer indexes over a sequential scan.
  await broker.app.pool.query('INSERT INTO devices (id, secret_hash) SELECT \'exp-\' || lpad(i::text, 6, \'0\'), \'x\' FROM generate_series(1, 20000) i')
  await broker.app.pool.query(`INSERT INTO device_configs (device_id, desired_version, desired_config, reported_version, reported_status)
    SELECT 'exp-' || lpad(i::text, 6, '0'), 2, '{}', CASE WHEN i % 100 = 0 THEN 1 ELSE 2 END, CASE WHEN i % 100 = 1 THEN 'failed' ELSE 'applied' END
      FROM generate_series(1, 20000) i`)
  await broker.app.pool.query('ANALYZE devices; ANALYZE device_configs')
  const plans: string[] = []
  const query = broker.app.pool.query.bind(broker.app.pool)
  const store = (await import('../../devices/device-store.js')).createDeviceStore({
    query: async (text: string, values: unknown[]) => {
      plans.push((await query(`EXPLAIN ${text}`, values)).rows.map((r: Record<string, string>) => r['QUERY PLAN']).join('\n'))
      return { rows: [] }
    }
  } as never)
  for (const q of [{ idPrefix: 'exp-0001' }, { configState: 'pending' as const }, { configState: 'failed' as const }, { configState: 'failed' as const, after: 'exp-010000' }]) {
    await store.list({ ...q, limit: 100 })
  }
  t.regex(plans[0]!, /Index Scan using devices_(pkey|id_pattern_idx) on devices/)
  t.regex(plans[1]!, /device_configs_pending_idx/)
  t.regex(plans[2]!, /device_configs_failed_idx/)
  t.regex(plans[3]!, /device_configs_failed_idx on device_configs c[^\n]*\n\s+Index Cond: \(device_id > 'exp-010000'::text\)/)
  for (const p of plans) t.notRegex(p, /Seq Scan on devices/)
  await broker.app.pool.query("DELETE FROM devices WHERE id LIKE 'exp-%'")
})

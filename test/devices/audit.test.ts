// The audit trail (issue 13): every state-changing REST call writes one entry
// (who, what, target, request id, before/after) in the change's own
// transaction; GET /v1/audit reads it (admin only) with filters and a cursor;
// AUDIT_RETENTION_DAYS trims it; the access log names the operator.
import { Writable } from 'node:stream'
import test from 'ava'
import { createLogger } from '../../broker/logger.js'
import type { FleetEvent } from '../../devices/fleet-events.js'
import { startTestBroker, api, connectDevice, type ApiResponse, type TestBroker } from '../helpers/broker.js'
import { waitFor } from '../helpers/wait.js'

let broker: TestBroker
test.before(async () => { broker = await startTestBroker({ API_RATE_LIMIT_PER_MINUTE: 100_000 }) })
test.after.always(async () => { await broker?.close(); await broker?.db.drop() })

interface AuditItem { id: string, at: string, actor: { id: string, name: string }, action: string, target: { type: string, id: string | null }, requestId: string | null, before: any, after: any } // eslint-disable-line @typescript-eslint/no-explicit-any

async function auditOf (query: string): Promise<AuditItem[]> {
  const r = await api(broker.app, 'GET', `/v1/audit?limit=1000&${query}`)
  if (r.status !== 200) throw new Error(`GET /v1/audit?${query}: ${r.status} ${JSON.stringify(r.body)}`)
  return r.body.items
}

const count = async () => Number((await broker.app.pool.query<{ n: string }>('SELECT count(*) AS n FROM audit_log')).rows[0]!.n)

/** The one entry of `action` on `targetId`, made by the request that answered `res`. */
async function theEntry (t: { is: (a: unknown, b: unknown, m?: string) => void }, res: ApiResponse, action: string, targetId: string | null) {
  const items = (await auditOf(`action=${action}`)).filter((a) => a.requestId === res.headers['x-request-id'])
  t.is(items.length, 1, `one ${action} entry for request ${String(res.headers['x-request-id'])}`)
  t.is(items[0]!.target.id, targetId)
  return items[0]!
}

async function tokenNamed (name: string, scopes: string[]): Promise<{ id: string, token: string }> {
  const r = await api(broker.app, 'POST', '/v1/tokens', { name, scopes })
  if (r.status !== 201) throw new Error(`token: ${r.status}`)
  return r.body
}

test('each audited call writes exactly one entry: actor (admin or a named token), action, target, request id, before/after; never a secret', async (t) => {
  const tok = await tokenNamed('ops-bot', ['write'])
  const bot = { id: tok.id, name: 'ops-bot' }
  const tokenCreated = (await auditOf(`action=token.create&targetId=${tok.id}`))
  t.is(tokenCreated.length, 1)
  t.deepEqual(tokenCreated[0]!.actor, { id: 'admin', name: 'admin' })
  t.like(tokenCreated[0]!.after, { id: tok.id, name: 'ops-bot', scopes: ['write'] })

  const created = await api(broker.app, 'POST', '/v1/devices', { id: 'aud-1', name: 'Pump', labels: { site: 'oslo' } }, tok.token, { 'x-request-id': 'aud-req-create' })
  t.is(created.status, 201)
  const c = await theEntry(t, created, 'device.create', 'aud-1')
  t.deepEqual(c.actor, bot)
  t.is(c.requestId, 'aud-req-create')
  t.is(c.target.type, 'device')
  t.deepEqual(c.after, { id: 'aud-1', name: 'Pump', labels: { site: 'oslo' }, disabled: false })

  // Without an X-Request-Id the generated one is in the response header and the entry.
  const patched = await api(broker.app, 'PATCH', '/v1/devices/aud-1', { name: 'Pump 2', labels: { site: 'bergen' } }, tok.token)
  t.is(patched.status, 200)
  const u = await theEntry(t, patched, 'device.update', 'aud-1')
  t.truthy(u.requestId)
  t.deepEqual(u.before, { id: 'aud-1', name: 'Pump', labels: { site: 'oslo' }, disabled: false })
  t.deepEqual(u.after, { id: 'aud-1', name: 'Pump 2', labels: { site: 'bergen' }, disabled: false })

  const disabled = await api(broker.app, 'PATCH', '/v1/devices/aud-1', { disabled: true }, tok.token)
  const d = await theEntry(t, disabled, 'device.disable', 'aud-1')
  t.deepEqual([d.before, d.after], [{ disabled: false }, { disabled: true }])
  t.is((await auditOf('action=device.update&targetId=aud-1')).length, 1, 'disabling is not an update')
  const enabled = await api(broker.app, 'PATCH', '/v1/devices/aud-1', { disabled: false })
  const e = await theEntry(t, enabled, 'device.enable', 'aud-1')
  t.deepEqual(e.actor, { id: 'admin', name: 'admin' })

  const rotated = await api(broker.app, 'POST', '/v1/devices/aud-1/secret', undefined, tok.token)
  t.is(rotated.status, 200)
  const r = await theEntry(t, rotated, 'device.rotate_secret', 'aud-1')
  t.false(JSON.stringify(r).includes(rotated.body.secret))
  t.false(JSON.stringify(await auditOf('')).includes(created.body.secret), 'no secret in any entry')

  const cmd = await api(broker.app, 'POST', '/v1/devices/aud-1/commands', { name: 'reboot', ttlSeconds: 600 }, tok.token)
  t.is(cmd.status, 202)
  t.is(cmd.headers.location, `/v1/commands/${cmd.body.id}`)
  const cc = await theEntry(t, cmd, 'command.create', cmd.body.id)
  t.like(cc.after, { deviceId: 'aud-1', name: 'reboot', status: 'queued' })
  t.is(cc.target.type, 'command')
  const cancelled = await api(broker.app, 'POST', `/v1/commands/${cmd.body.id}/cancel`, undefined, tok.token)
  t.is(cancelled.status, 200)
  const cx = await theEntry(t, cancelled, 'command.cancel', cmd.body.id)
  t.deepEqual([cx.before, cx.after], [{ status: 'queued' }, { status: 'cancelled' }])

  const deleted = await api(broker.app, 'DELETE', '/v1/devices/aud-1', undefined, tok.token)
  t.is(deleted.status, 204)
  const del = await theEntry(t, deleted, 'device.delete', 'aud-1')
  t.deepEqual(del.before, { id: 'aud-1', name: 'Pump 2', labels: { site: 'bergen' }, disabled: false })
  t.is(del.after, null)

  const revoked = await api(broker.app, 'DELETE', `/v1/tokens/${tok.id}`)
  t.is(revoked.status, 204)
  const rv = await theEntry(t, revoked, 'token.revoke', tok.id)
  t.is(rv.before.revokedAt, null)
  t.truthy(rv.after.revokedAt)
  t.false(JSON.stringify(await auditOf('targetType=token')).includes(tok.token), 'no token value in any entry')
})

// Serial (ava runs these before the others): they count every entry.
test.serial('a call that fails (404, 409, 400) writes no entry', async (t) => {
  await api(broker.app, 'POST', '/v1/devices', { id: 'aud-fail' })
  const cmd = (await api(broker.app, 'POST', '/v1/devices/aud-fail/commands', { name: 'x' })).body
  await api(broker.app, 'POST', `/v1/commands/${cmd.id}/cancel`)
  const before = await count()
  const answers = [
    await api(broker.app, 'POST', '/v1/devices', { id: 'aud-fail' }),
    await api(broker.app, 'PATCH', '/v1/devices/aud-nobody', { name: 'x' }),
    await api(broker.app, 'DELETE', '/v1/devices/aud-nobody'),
    await api(broker.app, 'POST', '/v1/devices/aud-nobody/secret'),
    await api(broker.app, 'POST', '/v1/devices/aud-nobody/commands', { name: 'x' }),
    await api(broker.app, 'POST', `/v1/commands/${cmd.id}/cancel`),
    await api(broker.app, 'POST', '/v1/commands/00000000-0000-0000-0000-000000000000/cancel'),
    await api(broker.app, 'DELETE', '/v1/tokens/tok_nobody'),
    await api(broker.app, 'POST', '/v1/devices/bulk-actions', { action: 'disable', ids: ['a'], selector: 'site=x' })
  ]
  t.deepEqual(answers.map((a) => a.status), [409, 404, 404, 404, 404, 409, 404, 404, 400])
  t.is(answers[5]!.body.code, 'invalid_transition')
  t.is(await count(), before)
})

test('the entry and the change share one transaction: an audit insert that fails rolls the change back, and no event is published', async (t) => {
  await api(broker.app, 'POST', '/v1/devices', { id: 'aud-tx', name: 'before' })
  const seen: FleetEvent[] = []
  const off = broker.app.events.subscribe((e) => { if (e.deviceId === 'aud-tx') seen.push(e) })
  await broker.app.pool.query(`CREATE FUNCTION aud_refuse () RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'audit refused'; END $$;
    CREATE TRIGGER aud_refuse BEFORE INSERT ON audit_log FOR EACH ROW WHEN (NEW.target_id = 'aud-tx') EXECUTE FUNCTION aud_refuse();`)
  try {
    const patched = await api(broker.app, 'PATCH', '/v1/devices/aud-tx', { name: 'after', disabled: true })
    t.is(patched.status, 500)
    const deleted = await api(broker.app, 'DELETE', '/v1/devices/aud-tx')
    t.is(deleted.status, 500)
  } finally {
    await broker.app.pool.query('DROP TRIGGER aud_refuse ON audit_log; DROP FUNCTION aud_refuse()')
    off()
  }
  const d = await api(broker.app, 'GET', '/v1/devices/aud-tx')
  t.is(d.status, 200, 'not deleted')
  t.is(d.body.name, 'before')
  t.false(d.body.disabled)
  t.deepEqual(seen, [])
  t.is((await broker.app.pool.query("SELECT 1 FROM fleet_events WHERE device_id = 'aud-tx' AND type <> 'created'")).rowCount, 0, 'no stored event either')
})

test('device and command events carry ids and arrive after COMMIT', async (t) => {
  const seen: Array<{ event: FleetEvent, stored: Promise<boolean> }> = []
  const off = broker.app.events.subscribe((event) => {
    if (!event.deviceId?.startsWith('aud-ev')) return
    // Looked up from another connection the moment it is published: only a
    // committed row is visible there.
    const stored = event.id === undefined
      ? Promise.resolve(false)
      : broker.app.pool.query('SELECT 1 FROM fleet_events WHERE id = $1', [event.id]).then((r) => r.rowCount === 1)
    seen.push({ event, stored })
  })
  try {
    await api(broker.app, 'POST', '/v1/devices', { id: 'aud-ev' })
    await api(broker.app, 'PATCH', '/v1/devices/aud-ev', { labels: { a: 'b' } })
    const cmd = (await api(broker.app, 'POST', '/v1/devices/aud-ev/commands', { name: 'ping' })).body
    await api(broker.app, 'POST', `/v1/commands/${cmd.id}/cancel`)
    await api(broker.app, 'PATCH', '/v1/devices/aud-ev', { disabled: true })
    await api(broker.app, 'DELETE', '/v1/devices/aud-ev')
    await waitFor(() => seen.length >= 6)
  } finally { off() }
  t.deepEqual(seen.map((s) => `${s.event.kind}/${s.event.type}`), ['device/created', 'device/updated', 'command/queued', 'command/cancelled', 'device/disabled', 'device/deleted'])
  for (const s of seen) {
    t.regex(s.event.id ?? '', /^\d+$/)
    t.true(await s.stored, `${s.event.type} was committed when published`)
    t.is(s.event.deviceId, 'aud-ev')
  }
  t.deepEqual(seen[2]!.event.data, { commandId: seen[2]!.event.data.commandId, name: 'ping' })
  const ids = seen.map((s) => BigInt(s.event.id!))
  t.deepEqual([...ids].sort((a, b) => (a < b ? -1 : 1)), ids, 'ids grow in order')
})

test('the broker\'s own command transitions (sent, succeeded, expired) emit command events, without audit entries', async (t) => {
  const dev = (await api(broker.app, 'POST', '/v1/devices', { id: 'aud-sys' })).body
  const seen: FleetEvent[] = []
  const off = broker.app.events.subscribe((e) => { if (e.deviceId === 'aud-sys' && e.kind === 'command') seen.push(e) })
  const client = await connectDevice(broker.url, dev.id, dev.secret)
  try {
    await client.subscribeAsync('devices/aud-sys/commands/+', { qos: 1 })
    const cmd = (await api(broker.app, 'POST', '/v1/devices/aud-sys/commands', { name: 'go' })).body
    await client.publishAsync(`devices/aud-sys/commands/${cmd.id}/result`, JSON.stringify({ status: 'succeeded' }), { qos: 1 })
    const short = (await api(broker.app, 'POST', '/v1/devices/aud-sys/commands', { name: 'soon', ttlSeconds: 1 })).body
    await waitFor(() => seen.some((e) => e.type === 'expired'), { timeoutMs: 5000, what: 'expired event' })
    const of = (id: string) => seen.filter((e) => e.data.commandId === id).map((e) => e.type)
    t.deepEqual(of(cmd.id), ['queued', 'sent', 'succeeded'])
    t.deepEqual(of(short.id).at(-1), 'expired')
    t.is((await auditOf('actor=system')).length, 0)
    t.is((await auditOf(`targetId=${short.id}`)).map((a) => a.action).join(), 'command.create')
  } finally { off(); await client.endAsync() }
})

test('GET /v1/audit filters by actor, action, target and time, pages newest first; bad times are 400', async (t) => {
  const tok = await tokenNamed('filter-bot', ['write'])
  for (let i = 0; i < 5; i++) await api(broker.app, 'POST', '/v1/devices', { id: `aud-f-${i}` }, tok.token)
  await api(broker.app, 'PATCH', '/v1/devices/aud-f-0', { name: 'x' }, tok.token)
  const mine = await auditOf(`actor=${tok.id}`)
  t.deepEqual(mine.map((a) => `${a.action} ${a.target.id}`), ['device.update aud-f-0', ...[4, 3, 2, 1, 0].map((i) => `device.create aud-f-${i}`)])
  t.true(mine.every((a) => a.actor.name === 'filter-bot'))
  t.deepEqual((await auditOf(`actor=${tok.id}&action=device.update`)).map((a) => a.target.id), ['aud-f-0'])
  t.deepEqual((await auditOf('targetType=device&targetId=aud-f-0')).map((a) => a.action), ['device.update', 'device.create'])
  t.deepEqual((await auditOf('targetType=token')).filter((a) => a.target.id === tok.id).length, 1)

  // Time range: [from, to).
  const middle = mine[2]!.at
  const fromMiddle = await auditOf(`actor=${tok.id}&from=${encodeURIComponent(middle)}`)
  t.true(fromMiddle.length >= 3)
  t.true(fromMiddle.every((a) => a.at >= middle))
  const toMiddle = await auditOf(`actor=${tok.id}&to=${encodeURIComponent(middle)}`)
  t.true(toMiddle.every((a) => a.at < middle))
  t.is(fromMiddle.length + toMiddle.length, mine.length)
  t.deepEqual(await auditOf(`actor=${tok.id}&from=2000-01-01T00:00:00Z&to=2000-01-02T00:00:00Z`), [])

  // Paging: two at a time, newest first, every entry once.
  const paged: string[] = []
  let cursor: string | null = null
  do {
    const page: ApiResponse = await api(broker.app, 'GET', `/v1/audit?actor=${tok.id}&limit=2${cursor ? `&cursor=${cursor}` : ''}`)
    t.is(page.status, 200)
    paged.push(...page.body.items.map((a: AuditItem) => a.id))
    cursor = page.body.nextCursor
  } while (cursor)
  t.deepEqual(paged, mine.map((a) => a.id))
  // Ids are compared as numbers, not as text (9 before 15 would hide the newest entries).
  const all = (await api(broker.app, 'GET', '/v1/audit?limit=1000')).body.items as AuditItem[]
  t.true(all.length >= 10, `${all.length} entries`)
  t.true(all.every((a, i) => i === 0 || BigInt(a.id) < BigInt(all[i - 1]!.id)), 'strictly newest first by numeric id')

  for (const q of ['from=yesterday', 'to=2026-02-30T00:00:00Z', 'from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z', 'cursor=bogus', 'limit=0', 'color=red']) {
    const bad = await api(broker.app, 'GET', `/v1/audit?${q}`)
    t.is(bad.status, 400, q)
    t.is(bad.body.code, q.startsWith('cursor') ? 'invalid_cursor' : q.includes('&to=') ? 'invalid_range' : 'invalid_request', q)
  }
  t.regex((await api(broker.app, 'GET', '/v1/audit?from=yesterday')).body.detail, /from must be an ISO 8601 timestamp/)
})

test('only admin tokens read the audit trail', async (t) => {
  for (const scopes of [['read'], ['write']]) {
    const tok = await tokenNamed(`aud-${scopes[0]}`, scopes)
    const r = await api(broker.app, 'GET', '/v1/audit', undefined, tok.token)
    t.is(r.status, 403, scopes[0])
    t.is(r.body.code, 'forbidden')
  }
  const admin = await tokenNamed('aud-admin', ['admin'])
  t.is((await api(broker.app, 'GET', '/v1/audit', undefined, admin.token)).status, 200)
  t.is((await api(broker.app, 'GET', '/v1/audit', undefined, null)).status, 401)
})

test.serial('retention deletes entries older than AUDIT_RETENTION_DAYS, in batches, and keeps the rest', async (t) => {
  await api(broker.app, 'POST', '/v1/devices', { id: 'aud-ret' })
  const recent = await count()
  // 12,000 entries set a year and a half back (more than one batch), one just inside.
  await broker.app.pool.query(`INSERT INTO audit_log (at, actor_id, actor_name, action, target_type)
    SELECT now() - interval '500 days', 'admin', 'admin', 'device.update', 'device' FROM generate_series(1, 12000)`)
  await broker.app.pool.query(`INSERT INTO audit_log (at, actor_id, actor_name, action, target_type, target_id)
    VALUES (now() - interval '364 days', 'admin', 'admin', 'device.update', 'device', 'aud-ret-kept')`)
  const deleted = await broker.app.auditRetention.run()
  t.is(deleted, 12000)
  t.is(await count(), recent + 1)
  t.is((await auditOf('targetId=aud-ret-kept')).length, 1)
  t.is((await auditOf('action=device.create&targetId=aud-ret')).length, 1)
})

test('the access log line names the operator: token id and name', async (t) => {
  const lines: string[] = []
  const log = createLogger({ level: 'info', destination: new Writable({ write (chunk, _enc, done) { lines.push(String(chunk)); done() } }) })
  const own = await startTestBroker({}, undefined, { log })
  try {
    const tok = (await api(own.app, 'POST', '/v1/tokens', { name: 'log-bot', scopes: ['read'] })).body
    await api(own.app, 'GET', '/v1/devices', undefined, tok.token, { 'x-request-id': 'aud-log-1' })
    const entries = lines.flatMap((l) => l.trim().split('\n')).map((l) => JSON.parse(l) as Record<string, unknown>)
    const line = entries.find((e) => e.reqId === 'aud-log-1' && e.msg === 'request')
    t.like(line, { route: '/v1/devices', status: 200, operator: tok.id, operatorName: 'log-bot' })
    t.false(lines.join('').includes(tok.token), 'never the token itself')
  } finally { await own.close(); await own.db.drop() }
})

test('a PATCH that renames and disables writes both entries; a repeated Idempotency-Key writes none', async (t) => {
  await api(broker.app, 'POST', '/v1/devices', { id: 'aud-both', name: 'a' })
  const r = await api(broker.app, 'PATCH', '/v1/devices/aud-both', { name: 'b', disabled: true })
  t.is(r.status, 200)
  const entries = (await auditOf('targetId=aud-both')).filter((a) => a.requestId === r.headers['x-request-id'])
  t.deepEqual(entries.map((a) => a.action).sort(), ['device.disable', 'device.update'])
  t.like(entries.find((a) => a.action === 'device.update')!.after, { name: 'b', disabled: true })

  const first = await api(broker.app, 'POST', '/v1/devices/aud-both/commands', { name: 'x' }, undefined, { 'idempotency-key': 'aud-key-1' })
  const again = await api(broker.app, 'POST', '/v1/devices/aud-both/commands', { name: 'x' }, undefined, { 'idempotency-key': 'aud-key-1' })
  t.deepEqual([first.status, again.status], [202, 200])
  t.is((await auditOf(`action=command.create&targetId=${first.body.id}`)).length, 1)
})

// Config history, rollback and failed applies (issue 13), against a real
// broker, PostgreSQL and MQTT devices.
import test from 'ava'
import { randomBytes } from 'node:crypto'
import { readFile, readdir } from 'node:fs/promises'
import { join } from 'node:path'
import pg from 'pg'
import type { MqttClient } from 'mqtt'
import { startTestBroker, connectDevice, api, type TestBroker } from '../helpers/broker.js'
import { waitFor } from '../helpers/wait.js'
import { withDatabaseName } from '../helpers/database.js'
import type { FleetEvent } from '../../devices/fleet-events.js'

let broker: TestBroker
const events: FleetEvent[] = []
test.before(async () => {
  broker = await startTestBroker({ API_RATE_LIMIT_PER_MINUTE: 100_000 })
  broker.app.events.subscribe((e) => events.push(e))
})
test.after.always(async () => { await broker?.close(); await broker?.db.drop() })

function collect (client: MqttClient, topic: string): Array<{ version: number, config: unknown }> {
  const got: Array<{ version: number, config: unknown }> = []
  client.on('message', (t, payload) => { if (t === topic) got.push(JSON.parse(payload.toString())) })
  return got
}

async function online (id: string): Promise<{ client: MqttClient, got: Array<{ version: number, config: unknown }> }> {
  const dev = (await api(broker.app, 'POST', '/v1/devices', { id })).body
  const client = await connectDevice(broker.url, dev.id, dev.secret)
  const got = collect(client, `devices/${id}/config`)
  await client.subscribeAsync(`devices/${id}/config`, { qos: 1 })
  return { client, got }
}

const configEvents = (deviceId: string) => events.filter((e) => e.kind === 'config' && e.deviceId === deviceId)

test('every desired version is kept with who set it; a rollback is a new version pushed to the device', async (t) => {
  const { client, got } = await online('hist-1')
  // A named API token sets the second version: the history names it.
  const token = (await api(broker.app, 'POST', '/v1/tokens', { name: 'ops-alice', scopes: ['write'] })).body
  t.is((await api(broker.app, 'PUT', '/v1/devices/hist-1/config', { config: { mode: 'eco', n: 1 } })).body.version, 1)
  t.is((await api(broker.app, 'PUT', '/v1/devices/hist-1/config', { config: { mode: 'turbo' } }, token.token)).body.version, 2)

  const rb = await api(broker.app, 'POST', '/v1/devices/hist-1/config/rollback', { toVersion: 1 })
  t.is(rb.status, 200)
  t.deepEqual(rb.body, { version: 3, config: { mode: 'eco', n: 1 }, delivered: true })
  // The device receives the rolled-back config as a new version, like any push.
  await waitFor(() => got.some((m) => m.version === 3), { what: 'version 3 on the device' })
  t.deepEqual(got.map((m) => m.version), [1, 2, 3])
  t.deepEqual(got[2], { version: 3, config: { mode: 'eco', n: 1 } })
  const state = (await api(broker.app, 'GET', '/v1/devices/hist-1/config')).body
  t.is(state.desired.version, 3)
  t.is(state.state, 'pending')

  const history = await api(broker.app, 'GET', '/v1/devices/hist-1/config/history')
  t.is(history.status, 200)
  t.deepEqual(history.body.items.map((v: { version: number, source: string }) => [v.version, v.source]), [[3, 'rollback'], [2, 'api'], [1, 'api']])
  t.deepEqual(history.body.items[0].setBy, { id: 'admin', name: 'admin' })
  t.deepEqual(history.body.items[1].setBy, { id: token.id, name: 'ops-alice' })
  t.deepEqual(history.body.items[1].config, { mode: 'turbo' })
  t.true(Number.isFinite(Date.parse(history.body.items[0].setAt)))
  t.is(history.body.nextCursor, null)

  // Paging, newest first, with the cursor.
  const first = (await api(broker.app, 'GET', '/v1/devices/hist-1/config/history?limit=2')).body
  t.deepEqual(first.items.map((v: { version: number }) => v.version), [3, 2])
  t.truthy(first.nextCursor)
  const second = (await api(broker.app, 'GET', `/v1/devices/hist-1/config/history?limit=2&cursor=${first.nextCursor}`)).body
  t.deepEqual(second.items.map((v: { version: number }) => v.version), [1])
  t.is(second.nextCursor, null)

  // Audit: who, what, in the change's transaction.
  const { rows } = await broker.app.pool.query<{ action: string, actor_id: string, actor_name: string, after: { version: number, toVersion?: number } }>(
    'SELECT action, actor_id, actor_name, after FROM audit_log WHERE target_type = \'device\' AND target_id = \'hist-1\' AND action LIKE \'config.%\' ORDER BY id')
  t.deepEqual(rows.map((r) => [r.action, r.actor_id, r.actor_name, r.after.version]), [
    ['config.set', 'admin', 'admin', 1], ['config.set', token.id, 'ops-alice', 2], ['config.rollback', 'admin', 'admin', 3]])
  t.is(rows[2]!.after.toVersion, 1)

  // Events: one config/desired per version, with its source.
  await waitFor(() => configEvents('hist-1').length >= 3)
  t.deepEqual(configEvents('hist-1').map((e) => [e.type, e.data.version, e.data.source]), [['desired', 1, 'api'], ['desired', 2, 'api'], ['desired', 3, 'rollback']])
  t.truthy(configEvents('hist-1')[0]!.id, 'stored events carry their id')
  await client.endAsync()
})

test('rollback refuses unknown devices and versions, and bad bodies; history refuses bad cursors', async (t) => {
  await api(broker.app, 'POST', '/v1/devices', { id: 'hist-2' })
  const noConfig = await api(broker.app, 'POST', '/v1/devices/hist-2/config/rollback', { toVersion: 1 })
  t.is(noConfig.status, 404)
  t.is(noConfig.body.code, 'not_found')
  t.regex(noConfig.body.detail, /config version 1 of device hist-2/)
  await api(broker.app, 'PUT', '/v1/devices/hist-2/config', { config: { a: 1 } })
  const unknown = await api(broker.app, 'POST', '/v1/devices/hist-2/config/rollback', { toVersion: 9 })
  t.is(unknown.status, 404)
  t.regex(unknown.body.detail, /config version 9/)
  const nobody = await api(broker.app, 'POST', '/v1/devices/nobody/config/rollback', { toVersion: 1 })
  t.is(nobody.status, 404)
  t.regex(nobody.body.detail, /device nobody/)
  t.is((await api(broker.app, 'POST', '/v1/devices/hist-2/config/rollback', { toVersion: 0 })).status, 400)
  t.is((await api(broker.app, 'POST', '/v1/devices/hist-2/config/rollback', {})).status, 400)
  // Nothing was changed by the refusals.
  t.is((await api(broker.app, 'GET', '/v1/devices/hist-2/config')).body.desired.version, 1)
  t.is((await api(broker.app, 'GET', '/v1/devices/nobody/config/history')).status, 404)
  t.deepEqual((await api(broker.app, 'GET', '/v1/devices/hist-2/config/history')).body.items.map((v: { version: number }) => v.version), [1])
  const bad = await api(broker.app, 'GET', `/v1/devices/hist-2/config/history?cursor=${Buffer.from('["99999999999"]').toString('base64url')}`)
  t.is(bad.status, 400)
  t.is(bad.body.code, 'invalid_cursor')
  // Read scope reads the history; it cannot roll back.
  const reader = (await api(broker.app, 'POST', '/v1/tokens', { name: 'viewer', scopes: ['read'] })).body.token
  t.is((await api(broker.app, 'GET', '/v1/devices/hist-2/config/history', undefined, reader)).status, 200)
  t.is((await api(broker.app, 'POST', '/v1/devices/hist-2/config/rollback', { toVersion: 1 }, reader)).status, 403)
})

test('a device reports a failed apply: state failed with its error, an event, and a later success clears it', async (t) => {
  const { client } = await online('fail-1')
  await api(broker.app, 'PUT', '/v1/devices/fail-1/config', { config: { fw: '9.9' } })
  await client.publishAsync('devices/fail-1/config/reported', JSON.stringify({ version: 1, status: 'failed', error: 'checksum mismatch' }), { qos: 1 })
  let state = (await api(broker.app, 'GET', '/v1/devices/fail-1/config')).body
  t.is(state.state, 'failed')
  t.false(state.inSync)
  t.is(state.reported.status, 'failed')
  t.is(state.reported.error, 'checksum mismatch')
  t.is(state.reported.version, 1)
  await waitFor(() => configEvents('fail-1').some((e) => e.type === 'failed'), { what: 'config/failed event' })
  t.deepEqual(configEvents('fail-1').find((e) => e.type === 'failed')!.data, { version: 1, error: 'checksum mismatch' })
  const { rows } = await broker.app.pool.query('SELECT reported_status, reported_error FROM device_configs WHERE device_id = \'fail-1\'')
  t.deepEqual(rows[0], { reported_status: 'failed', reported_error: 'checksum mismatch' })

  // The same report again changes nothing: no second event.
  await client.publishAsync('devices/fail-1/config/reported', JSON.stringify({ version: 1, status: 'failed', error: 'checksum mismatch' }), { qos: 1 })
  // A retry that succeeds (the old form, without status) clears it.
  await client.publishAsync('devices/fail-1/config/reported', JSON.stringify({ version: 1 }), { qos: 1 })
  state = (await api(broker.app, 'GET', '/v1/devices/fail-1/config')).body
  t.is(state.state, 'in_sync')
  t.true(state.inSync)
  t.is(state.reported.status, 'applied')
  t.false('error' in state.reported)
  await waitFor(() => configEvents('fail-1').some((e) => e.type === 'applied'), { what: 'config/applied event' })
  t.deepEqual(configEvents('fail-1').map((e) => e.type), ['desired', 'failed', 'applied'])

  // A new desired version: pending again, whatever the last report was.
  await api(broker.app, 'PUT', '/v1/devices/fail-1/config', { config: { fw: '10.0' } })
  await client.publishAsync('devices/fail-1/config/reported', JSON.stringify({ version: 2, status: 'applied' }), { qos: 1 })
  t.is((await api(broker.app, 'GET', '/v1/devices/fail-1/config')).body.state, 'in_sync')
  await client.endAsync()
})

test('failed reports: the error is bounded, and shapes outside the contract are counted invalid', async (t) => {
  const { client } = await online('fail-2')
  await api(broker.app, 'PUT', '/v1/devices/fail-2/config', { config: { x: 1 } })
  const invalid = async () => {
    const m = await broker.app.metrics.registry.getSingleMetric('fleetgate_device_messages_total')!.get()
    return m.values.find((v) => v.labels.kind === 'config_reported' && v.labels.outcome === 'invalid')?.value ?? 0
  }
  const before = await invalid()
  await client.publishAsync('devices/fail-2/config/reported', JSON.stringify({ version: 1, status: 'exploded' }), { qos: 1 })
  await client.publishAsync('devices/fail-2/config/reported', JSON.stringify({ version: 1, status: 'failed', error: { code: 7 } }), { qos: 1 })
  t.is(await invalid(), before + 2)
  t.is((await api(broker.app, 'GET', '/v1/devices/fail-2/config')).body.reported, null, 'nothing recorded')
  // Without an error text it is still a failure; a long text is cut.
  await client.publishAsync('devices/fail-2/config/reported', JSON.stringify({ version: 1, status: 'failed' }), { qos: 1 })
  let state = (await api(broker.app, 'GET', '/v1/devices/fail-2/config')).body
  t.is(state.state, 'failed')
  t.false('error' in state.reported)
  await client.publishAsync('devices/fail-2/config/reported', JSON.stringify({ version: 1, status: 'failed', error: 'é'.repeat(5000) }), { qos: 1 })
  state = (await api(broker.app, 'GET', '/v1/devices/fail-2/config')).body
  t.is([...state.reported.error].length, 1000)
  t.true(state.reported.error.endsWith('…'))
  t.true(client.connected)
  await client.endAsync()
})

test('a rollout step keeps its versions in the history, set by whoever created the rollout', async (t) => {
  const dev = (await api(broker.app, 'POST', '/v1/devices', { id: 'hist-ro', labels: { batch: 'hist' } })).body
  t.truthy(dev.secret)
  await api(broker.app, 'PUT', '/v1/devices/hist-ro/config', { config: { v: 0 } })
  const token = (await api(broker.app, 'POST', '/v1/tokens', { name: 'ops-bob', scopes: ['write'] })).body
  const ro = (await api(broker.app, 'POST', '/v1/rollouts', { selector: 'batch=hist', config: { v: 1 } }, token.token)).body
  await waitFor(async () => (await api(broker.app, 'GET', `/v1/rollouts/${ro.id}`)).body.status === 'completed')
  const items = (await api(broker.app, 'GET', '/v1/devices/hist-ro/config/history')).body.items
  t.deepEqual(items[0], { version: 2, config: { v: 1 }, setAt: items[0].setAt, setBy: { id: token.id, name: 'ops-bob' }, source: 'rollout', rolloutId: ro.id })
  await waitFor(() => configEvents('hist-ro').some((e) => e.data.source === 'rollout'))
  t.is(configEvents('hist-ro').find((e) => e.data.source === 'rollout')!.data.rolloutId, ro.id)
})

test('migration 007 keeps existing data valid: current versions become history, reports count as applied, rollout targets get their outcome', async (t) => {
  // A database at migration 006 with data in it, then 007 applied on top.
  const name = 'fg_upgrade_' + randomBytes(6).toString('hex')
  const admin = new pg.Client({ connectionString: process.env.FLEETGATE_TEST_ADMIN_URL })
  await admin.connect()
  await admin.query(`CREATE DATABASE ${name}`)
  const db = new pg.Client({ connectionString: withDatabaseName(process.env.FLEETGATE_TEST_ADMIN_URL!, name) })
  await db.connect()
  t.teardown(async () => { await db.end(); await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`); await admin.end() })
  const files = (await readdir('migrations')).filter((f) => /^\d{3}-.*\.sql$/.test(f)).sort()
  for (const f of files.filter((f) => f < '007')) await db.query(await readFile(join('migrations', f), 'utf8'))
  await db.query('INSERT INTO devices (id, secret_hash) VALUES (\'up-1\', \'x\'), (\'up-2\', \'x\'), (\'up-3\', \'x\')')
  await db.query(`INSERT INTO device_configs (device_id, desired_version, desired_config, reported_version, reported_config, reported_at)
                  VALUES ('up-1', 3, '{"a":3}', 3, NULL, now()), ('up-2', 2, '{"b":2}', 1, NULL, now()), ('up-3', 5, '{"c":5}', NULL, NULL, NULL)`)
  await db.query('INSERT INTO rollouts (id, selector, config, status) VALUES (\'11111111-1111-1111-1111-111111111111\', \'{}\', \'{"b":2}\', \'completed\')')
  await db.query(`INSERT INTO rollout_targets (rollout_id, device_id, version, pushed_at) VALUES
                  ('11111111-1111-1111-1111-111111111111', 'up-1', 2, now()), ('11111111-1111-1111-1111-111111111111', 'up-2', 2, now())`)
  await db.query(await readFile(join('migrations', files.find((f) => f.startsWith('007'))!), 'utf8'))

  const history = await db.query('SELECT device_id, version, config, source, rollout_id, set_by_id FROM config_versions ORDER BY device_id')
  t.deepEqual(history.rows, [
    { device_id: 'up-1', version: 3, config: { a: 3 }, source: 'api', rollout_id: null, set_by_id: null },
    { device_id: 'up-2', version: 2, config: { b: 2 }, source: 'rollout', rollout_id: '11111111-1111-1111-1111-111111111111', set_by_id: null },
    { device_id: 'up-3', version: 5, config: { c: 5 }, source: 'api', rollout_id: null, set_by_id: null }])
  const reports = await db.query('SELECT device_id, reported_status FROM device_configs ORDER BY device_id')
  t.deepEqual(reports.rows.map((r) => [r.device_id, r.reported_status]), [['up-1', 'applied'], ['up-2', 'applied'], ['up-3', null]])
  const rollout = await db.query('SELECT kind, command FROM rollouts')
  t.deepEqual(rollout.rows, [{ kind: 'config', command: null }])
  const targets = await db.query('SELECT device_id, outcome FROM rollout_targets ORDER BY device_id')
  t.deepEqual(targets.rows.map((r) => [r.device_id, r.outcome]), [['up-1', 'applied'], ['up-2', null]])
  // A command rollout needs its command, and a config rollout its config.
  await t.throwsAsync(db.query('INSERT INTO rollouts (id, kind, selector, status) VALUES (\'22222222-2222-2222-2222-222222222222\', \'command\', \'{}\', \'running\')'), { message: /rollouts_payload_check/ })
})

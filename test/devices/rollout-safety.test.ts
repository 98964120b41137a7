// Rollouts that are listed, report their targets by state, carry commands,
// and pause themselves when failures cross a threshold (issue 13): a real
// broker, PostgreSQL, and MQTT devices of which some fail on purpose.
import test from 'ava'
import type { MqttClient } from 'mqtt'
import { startTestBroker, connectDevice, api, TEST_ADMIN_TOKEN, type TestBroker } from '../helpers/broker.js'
import { waitFor } from '../helpers/wait.js'
import type { FleetEvent } from '../../devices/fleet-events.js'
import { startFleet } from '../../simulator/fleet-runner.js'
import { CONFIG_FOLLOWER } from '../../simulator/virtual-device.js'

let broker: TestBroker
const events: FleetEvent[] = []
test.before(async () => {
  broker = await startTestBroker({ API_RATE_LIMIT_PER_MINUTE: 100_000 })
  broker.app.events.subscribe((e) => events.push(e))
})
test.after.always(async () => { await broker?.close(); await broker?.db.drop() })

interface Behaviour {
  /** Config versions: report failed (with this error) instead of applied. */
  failConfig? (id: string): string | undefined
  /** Commands: the status to answer with; undefined: no answer. */
  commandStatus? (id: string): 'succeeded' | 'failed' | undefined
}

/** Ids prefix-00, prefix-01, …: rollouts push in id order, so this is the order of the pushes. */
const ids = (prefix: string, n: number) => Array.from({ length: n }, (_, i) => `${prefix}-${String(i).padStart(2, '0')}`)

async function register (prefix: string, n: number, labels: Record<string, string>): Promise<Array<{ id: string, secret: string }>> {
  const res = await broker.app.http.inject({ method: 'POST', url: '/v1/devices/bulk', headers: { authorization: `Bearer ${TEST_ADMIN_TOKEN}` }, payload: { devices: ids(prefix, n).map((id) => ({ id, labels })) } })
  return res.body.trim().split('\n').map((l) => JSON.parse(l) as { id: string, secret: string })
}

/** Devices that do what the MQTT contract says, some of them failing on purpose. */
async function fleet (prefix: string, n: number, labels: Record<string, string>, behaviour: Behaviour = {}): Promise<MqttClient[]> {
  const creds = await register(prefix, n, labels)
  return await Promise.all(creds.map(async (c) => {
    // A slow CONNACK on a busy machine (all test files run at once) is not what this tests.
    const client = await connectDevice(broker.url, c.id, c.secret, { connectTimeout: 30_000 })
    client.on('message', (topic, payload) => {
      const body = JSON.parse(payload.toString()) as { version: number, id: string }
      if (topic === `devices/${c.id}/config`) {
        const error = behaviour.failConfig?.(c.id)
        client.publish(`devices/${c.id}/config/reported`, JSON.stringify(error ? { version: body.version, status: 'failed', error } : { version: body.version, status: 'applied' }), { qos: 1 })
      } else if (topic.startsWith(`devices/${c.id}/commands/`)) {
        const status = behaviour.commandStatus?.(c.id)
        if (status) client.publish(`${topic}/result`, JSON.stringify({ status, result: { by: c.id } }), { qos: 1 })
      }
    })
    await client.subscribeAsync([`devices/${c.id}/config`, `devices/${c.id}/commands/+`], { qos: 1 })
    return client
  }))
}

const getRollout = async (id: string) => (await api(broker.app, 'GET', `/v1/rollouts/${id}`)).body
const rolloutEvents = (id: string) => events.filter((e) => e.kind === 'rollout' && e.data.rolloutId === id)
const index = (id: string) => Number(id.slice(id.lastIndexOf('-') + 1))

test('maxFailures: the rollout pauses itself with the reason, pushes nothing more, and resumes with a raised threshold', async (t) => {
  // 10 devices, 4 of which (0, 2, 4, 6: pushed in id order) fail to apply.
  const clients = await fleet('mf', 10, { batch: 'mf' }, { failConfig: (id) => index(id) % 2 === 0 && index(id) <= 6 ? `flash write error on ${id}` : undefined })
  const created = await api(broker.app, 'POST', '/v1/rollouts', { selector: 'batch=mf', config: { fw: '3.1' }, ratePerSecond: 2, maxFailures: 2 })
  t.is(created.status, 201)
  t.is(created.headers.location, `/v1/rollouts/${created.body.id}`)
  t.is(created.body.maxFailures, 2)
  t.is(created.body.maxFailureRatio, null)
  t.is(created.body.kind, 'config')
  const id = created.body.id as string

  const paused = await waitFor(async () => { const r = await getRollout(id); return r.status === 'paused' ? r : undefined }, { timeoutMs: 15_000, what: 'the rollout to pause itself' })
  t.is(paused.pauseReason, '3 failures exceeded maxFailures 2')
  t.is(paused.counts.failed, 3)
  const metrics = await api(broker.app, 'GET', '/metrics', undefined, null)
  t.regex(String(metrics.body), /^fleetgate_rollout_auto_pauses_total [1-9]/m, 'the auto-pause is counted')
  t.true(paused.counts.pending >= 3, `remaining targets are not pushed (pending ${paused.counts.pending})`)
  t.is(paused.counts.targeted, 10)
  t.is(paused.counts.pending + paused.counts.delivered + paused.counts.applied + paused.counts.failed + paused.counts.expired, 10)
  t.is(paused.counts.pushed, 10 - paused.counts.pending)
  t.is(paused.counts.inSync, paused.counts.applied)
  // It stays paused: a few more ticks push nothing.
  const t0 = Date.now()
  await waitFor(() => Date.now() - t0 > 700)
  t.is((await getRollout(id)).counts.pending, paused.counts.pending)
  // The pause is an event with the reason.
  const pausedEvent = await waitFor(() => rolloutEvents(id).find((e) => e.type === 'paused'))
  t.is(pausedEvent.data.reason, '3 failures exceeded maxFailures 2')
  t.truthy(pausedEvent.id)
  t.is((await broker.app.pool.query('SELECT count(*)::int AS n FROM fleet_events WHERE kind = \'rollout\' AND type = \'paused\' AND data->>\'rolloutId\' = $1', [id])).rows[0].n, 1, 'stored once')
  // A failed target shows up on its device.
  t.is((await api(broker.app, 'GET', '/v1/devices/mf-00/config')).body.state, 'failed')
  // Which devices failed, and why.
  const failedTargets = (await api(broker.app, 'GET', `/v1/rollouts/${id}/targets?state=failed`)).body
  t.deepEqual(failedTargets.items.map((x: { deviceId: string, error: string }) => [x.deviceId, x.error]),
    [['mf-00', 'flash write error on mf-00'], ['mf-02', 'flash write error on mf-02'], ['mf-04', 'flash write error on mf-04']])
  t.like(failedTargets.items[0], { state: 'failed', version: 1, commandId: null })
  t.is((await api(broker.app, 'GET', `/v1/rollouts/${id}/targets?state=pending&limit=1000`)).body.items.length, paused.counts.pending)
  const walked: string[] = []
  let cursor: string | null = null
  do {
    const page: { items: Array<{ deviceId: string }>, nextCursor: string | null } = (await api(broker.app, 'GET', `/v1/rollouts/${id}/targets?limit=3${cursor ? `&cursor=${cursor}` : ''}`)).body
    walked.push(...page.items.map((x) => x.deviceId))
    cursor = page.nextCursor
  } while (cursor)
  t.deepEqual(walked, ids('mf', 10))

  // Resumed as it is: still over the threshold, so it pauses again at once.
  t.is((await api(broker.app, 'POST', `/v1/rollouts/${id}/resume`)).body.status, 'running')
  await waitFor(async () => (await getRollout(id)).status === 'paused', { what: 'paused again' })
  t.is((await getRollout(id)).counts.pending, paused.counts.pending, 'nothing pushed in between')
  // Resumed with a raised threshold: it carries on to the end.
  const resumed = await api(broker.app, 'POST', `/v1/rollouts/${id}/resume`, { maxFailures: 5 })
  t.is(resumed.status, 200)
  t.is(resumed.body.maxFailures, 5)
  t.is(resumed.body.pauseReason, null)
  const done = await waitFor(async () => { const r = await getRollout(id); return r.status === 'completed' && r.counts.delivered === 0 ? r : undefined }, { timeoutMs: 15_000, what: 'completed' })
  t.like(done.counts, { targeted: 10, pending: 0, delivered: 0, applied: 6, failed: 4, expired: 0, pushed: 10, inSync: 6 })

  // Events: created, paused (twice), resumed (twice), completed; progress at most about once a second.
  const types = rolloutEvents(id).map((e) => e.type)
  t.is(types[0], 'created')
  t.is(types.filter((x) => x === 'paused').length, 2)
  t.is(types.filter((x) => x === 'resumed').length, 2)
  t.is(types.at(-1), 'completed')
  const progress = rolloutEvents(id).filter((e) => e.type === 'progress')
  t.true(progress.length >= 1, 'progress events while it runs')
  t.is((progress[0]!.data.counts as { targeted: number }).targeted, 10)
  for (let i = 1; i < progress.length; i++) t.true(Date.parse(progress[i]!.at) - Date.parse(progress[i - 1]!.at) >= 850, 'progress at most ~1/s')
  // Audit: the operator's actions, not the rollout's own pause.
  const { rows } = await broker.app.pool.query<{ action: string, actor_id: string, before: { status: string, maxFailures: number } | null, after: { status: string, maxFailures: number } }>(
    'SELECT action, actor_id, before, after FROM audit_log WHERE target_type = \'rollout\' AND target_id = $1 ORDER BY id', [id])
  t.deepEqual(rows.map((r) => r.action), ['rollout.create', 'rollout.resume', 'rollout.resume'])
  t.is(rows[0]!.actor_id, 'admin')
  t.deepEqual([rows[2]!.before!.maxFailures, rows[2]!.after.maxFailures], [2, 5])
  await Promise.all(clients.map((c) => c.endAsync()))
})

test('maxFailureRatio: pauses once the failed share of finished targets is over it', async (t) => {
  // The first two devices pushed (ids 0 and 1) fail; the other eight apply.
  const clients = await fleet('mr', 10, { batch: 'mr' }, { failConfig: (id) => index(id) <= 1 ? 'unsupported option' : undefined })
  const id = (await api(broker.app, 'POST', '/v1/rollouts', { selector: 'batch=mr', config: { fw: '4' }, ratePerSecond: 2, maxFailureRatio: 0.5 })).body.id as string
  const paused = await waitFor(async () => { const r = await getRollout(id); return r.status === 'paused' ? r : undefined }, { timeoutMs: 15_000, what: 'the rollout to pause itself' })
  t.regex(paused.pauseReason, /^2 of [23] finished targets failed \((1\.00|0\.67)\), over maxFailureRatio 0\.5$/)
  t.true(paused.counts.pending >= 6)
  t.is(paused.maxFailureRatio, 0.5)
  // Removing the ratio lets it finish.
  t.is((await api(broker.app, 'POST', `/v1/rollouts/${id}/resume`, { maxFailureRatio: null })).body.maxFailureRatio, null)
  const done = await waitFor(async () => { const r = await getRollout(id); return r.status === 'completed' && r.counts.delivered === 0 ? r : undefined }, { timeoutMs: 15_000 })
  t.like(done.counts, { applied: 8, failed: 2 })
  t.is((await api(broker.app, 'POST', `/v1/rollouts/${id}/resume`, { maxFailureRatio: 2 })).status, 400)
  // 0 is a threshold (pause at the first failure), not "none".
  await register('zr', 3, { batch: 'zr' })
  const zero = (await api(broker.app, 'POST', '/v1/rollouts', { selector: 'batch=zr', config: {}, ratePerSecond: 1, maxFailures: 0 })).body
  t.is((await api(broker.app, 'POST', `/v1/rollouts/${zero.id}/pause`)).status, 200)
  t.is((await api(broker.app, 'POST', `/v1/rollouts/${zero.id}/resume`, { maxFailureRatio: 0 })).body.maxFailureRatio, 0)
  t.is((await getRollout(zero.id)).maxFailures, 0)
  // A resume without a body, or with null, keeps the thresholds.
  await api(broker.app, 'POST', `/v1/rollouts/${zero.id}/pause`)
  t.like((await broker.app.http.inject({ method: 'POST', url: `/v1/rollouts/${zero.id}/resume`, headers: { authorization: `Bearer ${TEST_ADMIN_TOKEN}`, 'content-type': 'application/json' }, payload: 'null' })).json(), { status: 'running', maxFailures: 0, maxFailureRatio: 0 })
  await api(broker.app, 'POST', `/v1/rollouts/${zero.id}/pause`)
  t.like((await api(broker.app, 'POST', `/v1/rollouts/${zero.id}/resume`)).body, { status: 'running', maxFailures: 0, maxFailureRatio: 0 })
  t.is((await api(broker.app, 'POST', `/v1/rollouts/${zero.id}/resume`, { maxFailures: 1, extra: true })).status, 400)
  await Promise.all(clients.map((c) => c.endAsync()))
})

test('simulated devices that fail a share of applies (the simulator\'s configFailRatio) make a rollout pause itself', async (t) => {
  const creds = await register('sim', 30, { batch: 'sim' })
  const fleet = startFleet({
    devices: creds.map((c) => ({ ...c, broker: broker.url })),
    profile: { ...CONFIG_FOLLOWER, configFailRatio: 0.4 },
    load: { kind: 'idle' },
    rampPerSecond: Infinity,
    churnPerMinute: 0,
    seed: 7,
    recordAcks: false
  })
  t.teardown(() => fleet.stop({ drainMs: 0 }).then(() => {}))
  t.is((await fleet.settled()).ready, 30)
  const id = (await api(broker.app, 'POST', '/v1/rollouts', { selector: 'batch=sim', config: { fw: 'sim' }, ratePerSecond: 5, maxFailures: 3 })).body.id as string
  const paused = await waitFor(async () => { const r = await getRollout(id); return r.status !== 'running' ? r : undefined }, { timeoutMs: 15_000, what: 'the rollout to stop' })
  t.is(paused.status, 'paused')
  // 4, or a few more when reports arrived together between two checks (a busy machine).
  const failures = Number(/^(\d+) failures exceeded maxFailures 3$/.exec(paused.pauseReason)?.[1])
  t.true(failures >= 4 && paused.counts.failed >= failures, paused.pauseReason)
  t.true(paused.counts.pending > 0, `pending ${paused.counts.pending}`)
  t.true(paused.counts.applied > 0)
  const failedDevice = (await broker.app.pool.query<{ device_id: string }>('SELECT device_id FROM device_configs WHERE reported_status = \'failed\' AND device_id LIKE \'sim-%\' LIMIT 1')).rows[0]!.device_id
  t.like((await api(broker.app, 'GET', `/v1/devices/${failedDevice}/config`)).body, { state: 'failed', reported: { status: 'failed', error: 'simulated apply failure' } })
})

test('a command rollout creates one command per target, delivered, with results counted', async (t) => {
  const clients = await fleet('cr', 6, { batch: 'cr' }, { commandStatus: (id) => index(id) < 4 ? 'succeeded' : 'failed' })
  const res = await api(broker.app, 'POST', '/v1/rollouts', { selector: 'batch=cr', command: { name: 'reboot', params: { delay: 5 }, ttlSeconds: 600 } })
  t.is(res.status, 201)
  t.is(res.body.kind, 'command')
  t.is(res.body.config, null)
  t.deepEqual(res.body.command, { name: 'reboot', params: { delay: 5 }, ttlSeconds: 600 })
  const done = await waitFor(async () => { const r = await getRollout(res.body.id); return r.counts.applied + r.counts.failed === 6 && r.status === 'completed' ? r : undefined }, { timeoutMs: 15_000, what: 'every command answered' })
  t.like(done.counts, { targeted: 6, pending: 0, delivered: 0, applied: 4, failed: 2, expired: 0, pushed: 6 })
  t.is(done.status, 'completed')
  // Each device got exactly one command, as POST /devices/{id}/commands makes them.
  const commands = (await api(broker.app, 'GET', '/v1/devices/cr-00/commands')).body.items
  t.is(commands.length, 1)
  t.like(commands[0], { name: 'reboot', params: { delay: 5 }, status: 'succeeded', result: { by: 'cr-00' } })
  t.is(commands[0].correlationId, res.body.id)
  t.is((await api(broker.app, 'GET', '/v1/devices/cr-05/commands')).body.items[0].status, 'failed')
  const failedTargets = (await api(broker.app, 'GET', `/v1/rollouts/${res.body.id}/targets?state=failed`)).body.items
  t.deepEqual(failedTargets.map((x: { deviceId: string }) => x.deviceId), ['cr-04', 'cr-05'])
  t.is((await api(broker.app, 'GET', `/v1/commands/${failedTargets[0].commandId}`)).body.status, 'failed')
  t.is((await api(broker.app, 'GET', '/v1/rollouts/00000000-0000-0000-0000-000000000000/targets')).status, 404)
  t.is((await api(broker.app, 'GET', '/v1/rollouts/nope/targets')).status, 404)
  t.is((await api(broker.app, 'GET', `/v1/rollouts/${res.body.id}/targets?state=lost`)).status, 400)
  const queued = events.filter((e) => e.kind === 'command' && e.type === 'queued' && e.data.rolloutId === res.body.id)
  t.is(queued.length, 6)
  await Promise.all(clients.map((c) => c.endAsync()))
})

test('command expiries count as failures: offline devices make a command rollout pause itself', async (t) => {
  await register('ce', 20, { batch: 'ce' })
  const id = (await api(broker.app, 'POST', '/v1/rollouts', { selector: 'batch=ce', command: { name: 'ping', ttlSeconds: 1 }, ratePerSecond: 2, maxFailures: 1 })).body.id as string
  const paused = await waitFor(async () => { const r = await getRollout(id); return r.status === 'paused' ? r : undefined }, { timeoutMs: 15_000, what: 'paused by expiries' })
  t.true(paused.counts.expired >= 2)
  t.regex(paused.pauseReason, /failures exceeded maxFailures 1/)
  t.true(paused.counts.pending > 0)
  const cancelled = await api(broker.app, 'POST', `/v1/rollouts/${id}/cancel`)
  t.is(cancelled.body.status, 'cancelled')
})

test('rollouts are listed newest first, filtered by status, with a cursor', async (t) => {
  // Selectors matching no device: each completes at the next tick.
  const ids: string[] = []
  for (let i = 0; i < 5; i++) ids.push((await api(broker.app, 'POST', '/v1/rollouts', { selector: `list=none-${i}`, config: { i }, ratePerSecond: 1 })).body.id)
  const running = (await api(broker.app, 'POST', '/v1/rollouts', { selector: 'list=some', config: { i: 9 } })).body.id as string
  await api(broker.app, 'POST', `/v1/rollouts/${running}/pause`)
  ids.push(running)
  await waitFor(async () => (await getRollout(ids[4]!)).status === 'completed')
  // Walk every page.
  const seen: string[] = []
  let cursor: string | null = null
  do {
    const res = await api(broker.app, 'GET', `/v1/rollouts?limit=2${cursor ? `&cursor=${cursor}` : ''}`)
    t.is(res.status, 200)
    t.true(res.body.items.length <= 2)
    seen.push(...res.body.items.map((r: { id: string }) => r.id))
    cursor = res.body.nextCursor
  } while (cursor)
  t.is(new Set(seen).size, seen.length, 'no rollout twice')
  const mine = seen.filter((x) => ids.includes(x))
  t.deepEqual(mine, [...ids].reverse(), 'newest first')
  const paused = (await api(broker.app, 'GET', '/v1/rollouts?status=paused&limit=1000')).body.items
  t.true(paused.some((r: { id: string }) => r.id === running))
  t.true(paused.every((r: { status: string }) => r.status === 'paused'))
  t.false((await api(broker.app, 'GET', '/v1/rollouts?status=completed&limit=1000')).body.items.some((r: { id: string }) => r.id === running))
  t.is((await api(broker.app, 'GET', '/v1/rollouts?status=nope')).status, 400)
  t.is((await api(broker.app, 'GET', '/v1/rollouts?cursor=abc')).body.code, 'invalid_cursor')
  // Audit and events for the operator's pause.
  t.is((await broker.app.pool.query('SELECT count(*)::int AS n FROM audit_log WHERE action = \'rollout.pause\' AND target_id = $1', [running])).rows[0].n, 1)
  await waitFor(() => rolloutEvents(running).some((e) => e.type === 'paused' && e.data.reason === undefined))
  await api(broker.app, 'POST', `/v1/rollouts/${running}/cancel`)
  await waitFor(() => rolloutEvents(running).some((e) => e.type === 'cancelled'))
  t.is((await broker.app.pool.query('SELECT count(*)::int AS n FROM audit_log WHERE action = \'rollout.cancel\' AND target_id = $1', [running])).rows[0].n, 1)
})

test('preview counts the enabled devices a selector matches; bodies with both or neither payload are refused', async (t) => {
  await register('pv', 7, { batch: 'pv', tier: 'edge' })
  t.is((await api(broker.app, 'PATCH', '/v1/devices/pv-03', { disabled: true })).status, 200)
  t.deepEqual((await api(broker.app, 'GET', '/v1/rollouts/preview?selector=batch=pv')).body, { targets: 6 })
  t.deepEqual((await api(broker.app, 'GET', '/v1/rollouts/preview?selector=batch=pv,tier=cloud')).body, { targets: 0 })
  t.is((await api(broker.app, 'GET', '/v1/rollouts/preview?selector=bad selector')).status, 400)
  t.is((await api(broker.app, 'GET', '/v1/rollouts/preview')).status, 200)
  // The preview is what a rollout then targets.
  const r = (await api(broker.app, 'POST', '/v1/rollouts', { selector: 'batch=pv', config: { a: 1 }, ratePerSecond: 1 })).body
  t.is(r.counts.targeted, 6)
  await api(broker.app, 'POST', `/v1/rollouts/${r.id}/cancel`)
  const both = await api(broker.app, 'POST', '/v1/rollouts', { selector: 'batch=pv', config: { a: 1 }, command: { name: 'x' } })
  t.is(both.status, 400)
  t.is(both.body.code, 'invalid_request')
  t.is((await api(broker.app, 'POST', '/v1/rollouts', { selector: 'batch=pv' })).status, 400)
  t.is((await api(broker.app, 'POST', '/v1/rollouts', { selector: 'batch=pv', config: {}, maxFailureRatio: 1.5 })).status, 400)
  t.is((await api(broker.app, 'POST', '/v1/rollouts', { selector: 'batch=pv', config: {}, maxFailures: -1 })).status, 400)
})

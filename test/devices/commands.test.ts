import test from 'ava'
import type { MqttClient } from 'mqtt'
import { startTestBroker, connectDevice, api, type TestBroker } from '../helpers/broker.js'
import { waitFor } from '../helpers/wait.js'
import type { FleetEvent } from '../../devices/fleet-events.js'

let broker: TestBroker
test.before(async () => { broker = await startTestBroker({ API_RATE_LIMIT_PER_MINUTE: 100_000 }) })
test.after.always(async () => { await broker?.close(); await broker?.db.drop() })

async function device (id: string) {
  const dev = (await api(broker.app, 'POST', '/v1/devices', { id })).body
  return { ...dev, connect: () => connectDevice(broker.url, dev.id, dev.secret) }
}

function commandsOf (client: MqttClient, id: string): Array<{ topic: string, body: { id: string, name: string, params: unknown, expiresAt: string } }> {
  const got: Array<{ topic: string, body: { id: string, name: string, params: unknown, expiresAt: string } }> = []
  client.on('message', (topic, payload) => { if (topic.startsWith(`devices/${id}/commands/`)) got.push({ topic, body: JSON.parse(payload.toString()) }) })
  return got
}

test('full lifecycle: queued → sent → succeeded, with times; waitSeconds returns as soon as the result arrives', async (t) => {
  const d = await device('cmd-life')
  const client = await d.connect()
  const got = commandsOf(client, d.id)
  await client.subscribeAsync(`devices/${d.id}/commands/+`, { qos: 1 })
  const created = await api(broker.app, 'POST', `/v1/devices/${d.id}/commands`, { name: 'reboot', params: { delay: 1 }, ttlSeconds: 60 }, undefined, { 'x-request-id': 'corr-123' })
  t.is(created.status, 202)
  t.is(created.body.status, 'sent')
  t.is(created.body.correlationId, 'corr-123')
  // At least once: a delivery racing the on-subscribe delivery may repeat it
  // (same id; devices deduplicate by command id).
  await waitFor(() => got.length >= 1)
  t.true(got.every((g) => g.body.id === created.body.id))
  t.is(got[0]!.topic, `devices/${d.id}/commands/${created.body.id}`)
  t.deepEqual(got[0]!.body, { id: created.body.id, name: 'reboot', params: { delay: 1 }, expiresAt: created.body.expiresAt })

  const waiting = api(broker.app, 'GET', `/v1/commands/${created.body.id}?waitSeconds=30`)
  const t0 = Date.now()
  await client.publishAsync(`devices/${d.id}/commands/${created.body.id}/result`, JSON.stringify({ status: 'succeeded', result: { uptime: 0 } }), { qos: 1 })
  const done = await waiting
  t.true(Date.now() - t0 < 5000, 'returned with the result, not at the end of the wait')
  t.is(done.body.status, 'succeeded')
  t.deepEqual(done.body.result, { uptime: 0 })
  t.truthy(done.body.sentAt)
  t.truthy(done.body.completedAt)
  // Answered from the committed row: what any later read returns (durable when the GET answers).
  t.deepEqual((await api(broker.app, 'GET', `/v1/commands/${created.body.id}`)).body, done.body)
  const list = await api(broker.app, 'GET', `/v1/devices/${d.id}/commands`)
  t.deepEqual(list.body.items.map((c: { id: string }) => c.id), [created.body.id])
  await client.endAsync()
})

test('the round trip\'s command events (queued, sent, succeeded) are stored with their transitions and published live, ids and times matching', async (t) => {
  const d = await device('cmd-events')
  const client = await d.connect()
  await client.subscribeAsync(`devices/${d.id}/commands/+`, { qos: 1 })
  const live: FleetEvent[] = []
  const unsubscribe = broker.app.events.subscribe((e) => { if (e.deviceId === d.id) live.push(e) }, ['command'])
  t.teardown(unsubscribe)
  const c = (await api(broker.app, 'POST', `/v1/devices/${d.id}/commands`, { name: 'probe' })).body
  t.is(c.status, 'sent')
  const waiting = api(broker.app, 'GET', `/v1/commands/${c.id}?waitSeconds=30`)
  await client.publishAsync(`devices/${d.id}/commands/${c.id}/result`, JSON.stringify({ status: 'succeeded' }), { qos: 1 })
  t.is((await waiting).body.status, 'succeeded')
  await waitFor(() => live.length >= 3, { what: 'three live command events' })
  const { rows } = await broker.app.pool.query<{ id: string, type: string, data: unknown, at: Date }>(
    'SELECT id::text, type, data, at FROM fleet_events WHERE kind = \'command\' AND device_id = $1 ORDER BY id', [d.id])
  t.deepEqual(rows.map((r) => r.type), ['queued', 'sent', 'succeeded'])
  for (const r of rows) t.deepEqual(r.data, { commandId: c.id, name: 'probe' })
  t.deepEqual(live.map((e) => ({ id: e.id, type: e.type, at: e.at, data: e.data })), rows.map((r) => ({ id: r.id, type: r.type, at: r.at.toISOString(), data: r.data })))
  await client.endAsync()
})

test('an offline device gets its queued commands when it subscribes; expired ones never', async (t) => {
  const d = await device('cmd-offline')
  const shortLived = await api(broker.app, 'POST', `/v1/devices/${d.id}/commands`, { name: 'blink', ttlSeconds: 1 })
  const longLived = await api(broker.app, 'POST', `/v1/devices/${d.id}/commands`, { name: 'update', ttlSeconds: 600 })
  t.is(shortLived.body.status, 'queued')
  await waitFor(async () => (await api(broker.app, 'GET', `/v1/commands/${shortLived.body.id}`)).body.status === 'expired', { what: 'expiry', timeoutMs: 5000 })
  const client = await d.connect()
  const got = commandsOf(client, d.id)
  await client.subscribeAsync(`devices/${d.id}/commands/+`, { qos: 1 })
  await waitFor(() => got.length >= 1)
  t.deepEqual(got.map((g) => g.body.name), ['update'])
  await waitFor(async () => (await api(broker.app, 'GET', `/v1/commands/${longLived.body.id}`)).body.status === 'sent')
  // A late result for the expired command is counted and ignored.
  await client.publishAsync(`devices/${d.id}/commands/${shortLived.body.id}/result`, JSON.stringify({ status: 'succeeded' }), { qos: 1 })
  t.is((await api(broker.app, 'GET', `/v1/commands/${shortLived.body.id}`)).body.status, 'expired')
  await client.publishAsync(`devices/${d.id}/commands/00000000-0000-0000-0000-000000000000/result`, JSON.stringify({ status: 'failed' }), { qos: 1 })
  const m = await broker.app.metrics.registry.getSingleMetric('fleetgate_device_messages_total')!.get()
  t.true(m.values.some((v) => v.labels.kind === 'command_result' && v.labels.outcome === 'unknown'))
  t.true(m.values.some((v) => v.labels.kind === 'command_result' && v.labels.outcome === 'finished'))
  t.true(client.connected)
  await client.endAsync()
})

test('a failed result is stored as failed', async (t) => {
  const d = await device('cmd-fail')
  const client = await d.connect()
  await client.subscribeAsync(`devices/${d.id}/commands/+`, { qos: 1 })
  const c = (await api(broker.app, 'POST', `/v1/devices/${d.id}/commands`, { name: 'x' })).body
  await client.publishAsync(`devices/${d.id}/commands/${c.id}/result`, JSON.stringify({ status: 'failed', result: { error: 'busy' } }), { qos: 1 })
  const got = (await api(broker.app, 'GET', `/v1/commands/${c.id}`)).body
  t.is(got.status, 'failed')
  t.deepEqual(got.result, { error: 'busy' })
  await client.endAsync()
})

test('Idempotency-Key: the same key returns the same command', async (t) => {
  const d = await device('cmd-idem')
  const a = await api(broker.app, 'POST', `/v1/devices/${d.id}/commands`, { name: 'once' }, undefined, { 'idempotency-key': 'k-1' })
  const b = await api(broker.app, 'POST', `/v1/devices/${d.id}/commands`, { name: 'once' }, undefined, { 'idempotency-key': 'k-1' })
  t.is(a.status, 202)
  t.is(b.status, 200)
  t.is(a.body.id, b.body.id)
  const c = await api(broker.app, 'POST', `/v1/devices/${d.id}/commands`, { name: 'once' }, undefined, { 'idempotency-key': 'k-2' })
  t.not(c.body.id, a.body.id)
  t.is((await api(broker.app, 'GET', `/v1/devices/${d.id}/commands`)).body.items.length, 2)
  // The same key for a different request is refused, not answered with the old command.
  for (const body of [{ name: 'other' }, { name: 'once', params: { x: 1 } }, { name: 'once', ttlSeconds: 60 }]) {
    const reused = await api(broker.app, 'POST', `/v1/devices/${d.id}/commands`, body, undefined, { 'idempotency-key': 'k-1' })
    t.is(reused.status, 422, JSON.stringify(body))
    t.is(reused.body.code, 'idempotency_key_reused')
  }
  t.is((await api(broker.app, 'GET', `/v1/devices/${d.id}/commands`)).body.items.length, 2, 'nothing created')
})

test('waitSeconds ends with the current state when nothing happens; errors are 400/404', async (t) => {
  const d = await device('cmd-wait')
  const c = (await api(broker.app, 'POST', `/v1/devices/${d.id}/commands`, { name: 'slow' })).body
  const t0 = Date.now()
  const r = await api(broker.app, 'GET', `/v1/commands/${c.id}?waitSeconds=1`)
  t.true(Date.now() - t0 >= 900)
  t.is(r.body.status, 'queued')
  t.is((await api(broker.app, 'GET', `/v1/commands/${c.id}?waitSeconds=100000`)).status, 400)
  t.is((await api(broker.app, 'GET', '/v1/commands/not-a-uuid')).status, 404)
  t.is((await api(broker.app, 'GET', '/v1/commands/not-a-uuid?waitSeconds=5')).status, 404, 'at once, not after the wait')
  t.is((await api(broker.app, 'POST', '/v1/devices/nobody/commands', { name: 'x' })).status, 404)
  t.is((await api(broker.app, 'POST', `/v1/devices/${d.id}/commands`, { name: 'x', ttlSeconds: 0 })).status, 400)
})

test('a waiting request wakes when its command expires (the NOTIFY path: expiry is not announced in-process)', async (t) => {
  const d = await device('cmd-expire-wait')
  const c = (await api(broker.app, 'POST', `/v1/devices/${d.id}/commands`, { name: 'late', ttlSeconds: 1 })).body
  t.is(c.status, 'queued')
  const t0 = Date.now()
  const r = await api(broker.app, 'GET', `/v1/commands/${c.id}?waitSeconds=30`)
  t.is(r.body.status, 'expired')
  // Expiry runs every second: woken within a few seconds, not at the end of the 30 s wait.
  t.true(Date.now() - t0 < 10_000, `woken after ${Date.now() - t0} ms`)
})

test('cancel (issue 13): a waiter wakes with cancelled, a later result is ignored and counted, a final command is 409', async (t) => {
  const d = await device('cmd-cancel')
  const client = await d.connect()
  const got = commandsOf(client, d.id)
  await client.subscribeAsync(`devices/${d.id}/commands/+`, { qos: 1 })
  const c = (await api(broker.app, 'POST', `/v1/devices/${d.id}/commands`, { name: 'long-job', ttlSeconds: 600 })).body
  t.is(c.status, 'sent')
  await waitFor(() => got.length >= 1)
  const waiting = api(broker.app, 'GET', `/v1/commands/${c.id}?waitSeconds=30`)
  const t0 = Date.now()
  const cancelled = await api(broker.app, 'POST', `/v1/commands/${c.id}/cancel`)
  t.is(cancelled.status, 200)
  t.is(cancelled.body.status, 'cancelled')
  t.truthy(cancelled.body.completedAt)
  const woke = await waiting
  t.true(Date.now() - t0 < 5000, 'the waiter woke at the cancel')
  t.is(woke.body.status, 'cancelled')

  const finished = async () => (await broker.app.metrics.registry.getSingleMetric('fleetgate_device_messages_total')!.get())
    .values.find((v) => v.labels.kind === 'command_result' && v.labels.outcome === 'finished')?.value ?? 0
  const before = await finished()
  await client.publishAsync(`devices/${d.id}/commands/${c.id}/result`, JSON.stringify({ status: 'succeeded', result: { late: true } }), { qos: 1 })
  await waitFor(async () => await finished() === before + 1, { what: 'the late result counted' })
  const after = (await api(broker.app, 'GET', `/v1/commands/${c.id}`)).body
  t.is(after.status, 'cancelled')
  t.is(after.result, null)

  const again = await api(broker.app, 'POST', `/v1/commands/${c.id}/cancel`)
  t.is(again.status, 409)
  t.is(again.body.code, 'invalid_transition')
  t.regex(again.body.detail, /already cancelled/)
  const done = (await api(broker.app, 'POST', `/v1/devices/${d.id}/commands`, { name: 'quick' })).body
  await client.publishAsync(`devices/${d.id}/commands/${done.id}/result`, JSON.stringify({ status: 'succeeded' }), { qos: 1 })
  const late = await api(broker.app, 'POST', `/v1/commands/${done.id}/cancel`)
  t.is(late.status, 409)
  t.regex(late.body.detail, /already succeeded/)
  t.is((await api(broker.app, 'POST', '/v1/commands/00000000-0000-0000-0000-000000000000/cancel')).status, 404)
  t.is((await api(broker.app, 'POST', '/v1/commands/not-a-uuid/cancel')).status, 404)

  const list = await api(broker.app, 'GET', `/v1/devices/${d.id}/commands?status=cancelled`)
  t.deepEqual(list.body.items.map((x: { id: string }) => x.id), [c.id])
  t.is((await api(broker.app, 'GET', `/v1/devices/${d.id}/commands?status=bogus`)).status, 400)
  await client.endAsync()
})

test('a cancelled queued command is never delivered when its device subscribes', async (t) => {
  const d = await device('cmd-cancel-queued')
  const c = (await api(broker.app, 'POST', `/v1/devices/${d.id}/commands`, { name: 'never', ttlSeconds: 600 })).body
  const keep = (await api(broker.app, 'POST', `/v1/devices/${d.id}/commands`, { name: 'later', ttlSeconds: 600 })).body
  t.is(c.status, 'queued')
  t.is((await api(broker.app, 'POST', `/v1/commands/${c.id}/cancel`)).body.status, 'cancelled')
  const client = await d.connect()
  const got = commandsOf(client, d.id)
  await client.subscribeAsync(`devices/${d.id}/commands/+`, { qos: 1 })
  await waitFor(() => got.length >= 1)
  t.deepEqual(got.map((g) => g.body.id), [keep.id])
  await client.endAsync()
})

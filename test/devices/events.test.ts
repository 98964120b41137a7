// GET /v1/events (issue 13): the live event stream over a real socket, from
// a real broker on a real PostgreSQL, with real MQTT devices.
import test from 'ava'
import pg from 'pg'
import { api, connectDevice, startTestBroker, type TestBroker } from '../helpers/broker.js'
import { openEvents, type SseClient } from '../helpers/sse.js'
import { waitFor } from '../helpers/wait.js'
import { SYSTEM_ACTOR, withChanges, writeChanges } from '../../devices/change-recorder.js'
import { withTransaction } from '../../devices/transaction.js'
import type { FleetEvent } from '../../devices/fleet-events.js'

let broker: TestBroker
const open: SseClient[] = []
async function stream (query = '', opts: Parameters<typeof openEvents>[2] = {}): Promise<SseClient> {
  const c = await openEvents(broker.app.httpPort, query, opts)
  open.push(c)
  return c
}

test.before(async () => {
  broker = await startTestBroker({
    EVENTS_HEARTBEAT_MS: 300,
    EVENTS_STREAM_BUFFER: 50,
    EVENTS_MAX_STREAMS_PER_TOKEN: 4,
    EVENTS_MAX_STREAMS: 6,
    INGEST_FLUSH_MS: 5
  })
})

test.afterEach.always(async () => {
  for (const c of open.splice(0)) c.close()
  // The server sees the sockets close before the next test counts streams.
  await waitFor(async () => (await broker.app.metrics.eventStreams.get()).values[0]?.value === 0, { what: 'every stream closed on the server' })
})

test.after.always(async () => {
  await broker?.close()
  await broker?.db.drop()
})

/** Stored events emitted as a change of the broker's own would (stored in a transaction, published after COMMIT: withChanges). */
async function emitStored (n: number, deviceId: string, type = 'updated'): Promise<string[]> {
  const events = Array.from({ length: n }, () => ({ kind: 'device' as const, type, deviceId, data: {} }))
  const stored = await withTransaction(broker.app.pool, (client) => writeChanges(client, SYSTEM_ACTOR, [], events))
  broker.app.events.publish(stored)
  return stored.map((e) => e.id!)
}

test.serial('telemetry after a real MQTT publish, presence on connect and disconnect, with the reason', async (t) => {
  const creds = await broker.app.devices.create({ id: 'ev-dev-1' })
  const s = await stream('kinds=telemetry,presence&deviceIds=ev-dev-1')
  t.is(s.status, 200)
  t.regex(String(s.headers['content-type']), /^text\/event-stream/)
  const client = await connectDevice(broker.url, creds.id, creds.secret)
  await s.waitFor((c) => c.events().find((e) => e.kind === 'presence' && e.type === 'connected'), 'presence connected')
  const ts = new Date(Date.now() - 60_000).toISOString()
  await client.publishAsync(`devices/${creds.id}/telemetry`, JSON.stringify({ ts, temp: 21.5, nested: { a: [1, 2] } }), { qos: 1 })
  const tel = await s.waitFor((c) => c.events().find((e) => e.kind === 'telemetry'), 'telemetry event')
  t.is(tel.type, 'stored')
  t.is(tel.deviceId, 'ev-dev-1')
  t.deepEqual(tel.data, { ts, reading: { ts, temp: 21.5, nested: { a: [1, 2] } } })
  t.is(s.frames.find((f) => f.event === 'telemetry')!.id, undefined, 'live-only kinds carry no id')
  // A pretty-printed payload (line breaks) is still one data line.
  await client.publishAsync(`devices/${creds.id}/telemetry`, '{\n  "temp": 22\n}', { qos: 1 })
  await s.waitFor((c) => c.events().find((e) => e.kind === 'telemetry' && e.data.reading.temp === 22), 'pretty-printed reading')
  await client.endAsync()
  const gone = await s.waitFor((c) => c.events().find((e) => e.kind === 'presence' && e.type === 'disconnected'), 'presence disconnected')
  t.is(gone.data.reason, 'clean')
  t.false(s.events().some((e) => e.deviceId !== 'ev-dev-1'))
})

test.serial('a dead letter is stored with its event in the same transaction and arrives with an id', async (t) => {
  const creds = await broker.app.devices.create({ id: 'ev-dev-2' })
  const s = await stream('kinds=dead_letter')
  const client = await connectDevice(broker.url, creds.id, creds.secret)
  await client.publishAsync(`devices/${creds.id}/telemetry`, 'not json', { qos: 1 })
  const dl = await s.waitFor((c) => c.events().find((e) => e.kind === 'dead_letter'), 'dead_letter event')
  await client.endAsync()
  t.is(dl.type, 'invalid_json')
  t.is(dl.deviceId, 'ev-dev-2')
  t.is(dl.data.reason, 'invalid_json')
  t.is(dl.data.topic, 'devices/ev-dev-2/telemetry')
  t.truthy(dl.id)
  t.is(s.frames.find((f) => f.event === 'dead_letter')!.id, dl.id)
  const { rows } = await broker.app.pool.query('SELECT d.reason FROM dead_letters d JOIN fleet_events e ON e.data->>\'deadLetterId\' = d.id::text WHERE e.id = $1', [dl.id])
  t.deepEqual(rows, [{ reason: 'invalid_json' }])
  t.false(s.events().some((e) => e.kind !== 'dead_letter'), 'only the kinds asked for')
})

test.serial('filters: device ids, label selector and kinds', async (t) => {
  const berlin = await broker.app.devices.create({ id: 'ev-berlin', labels: { site: 'berlin', tier: 'edge' } })
  const paris = await broker.app.devices.create({ id: 'ev-paris', labels: { site: 'paris', tier: 'edge' } })
  const bySelector = await stream('selector=' + encodeURIComponent('site=berlin,tier=edge'))
  const byIds = await stream('deviceIds=ev-paris')
  const presenceOnly = await stream('kinds=presence&deviceIds=ev-berlin,ev-paris')
  for (const d of [berlin, paris]) {
    const c = await connectDevice(broker.url, d.id, d.secret)
    await c.publishAsync(`devices/${d.id}/telemetry`, JSON.stringify({ v: d.id }), { qos: 1 })
    await c.endAsync()
  }
  await bySelector.waitFor((c) => c.events().filter((e) => e.kind === 'presence').length >= 2 && c.events().some((e) => e.kind === 'telemetry'), 'berlin events')
  await byIds.waitFor((c) => c.events().filter((e) => e.kind === 'presence').length >= 2 && c.events().some((e) => e.kind === 'telemetry'), 'paris events')
  await presenceOnly.waitFor((c) => c.events().length >= 4, 'presence of both')
  t.deepEqual([...new Set(bySelector.events().map((e) => e.deviceId))], ['ev-berlin'])
  t.deepEqual([...new Set(byIds.events().map((e) => e.deviceId))], ['ev-paris'])
  t.deepEqual([...new Set(presenceOnly.events().map((e) => e.kind))], ['presence'])
  t.deepEqual(new Set(presenceOnly.events().map((e) => e.deviceId)), new Set(['ev-berlin', 'ev-paris']))

  // A device relabeled into the selector is followed (its `device` event).
  await withChanges({ pool: broker.app.pool, hub: broker.app.events }, SYSTEM_ACTOR, async (client, rec) => {
    await client.query('UPDATE devices SET labels = $2 WHERE id = $1', ['ev-paris', { site: 'berlin', tier: 'edge' }])
    rec.event({ kind: 'device', type: 'updated', deviceId: 'ev-paris', data: {} })
  })
  await bySelector.waitFor((c) => c.events().some((e) => e.kind === 'device' && e.deviceId === 'ev-paris'), 'the relabeled device\'s event')
  const c = await connectDevice(broker.url, paris.id, paris.secret)
  await bySelector.waitFor((s) => s.events().some((e) => e.kind === 'presence' && e.deviceId === 'ev-paris'), 'the relabeled device\'s presence')
  await c.endAsync()

  const bad = await stream('kinds=telemetry,bogus')
  t.is(bad.status, 400)
  t.regex(bad.body, /bogus/)
  const badSelector = await stream('selector=nokey')
  t.is(badSelector.status, 400)
  t.regex(badSelector.body, /invalid_selector/)
})

test.serial('Last-Event-ID resumes stored kinds without gap or duplicate while new events keep coming', async (t) => {
  const before = await emitStored(40, 'ev-resume')
  const from = before[9]!
  // New stored events are committed while the stream replays and goes live.
  let emitting = true
  const emitted: Promise<string[]>[] = []
  const emitter = (async () => {
    for (let i = 0; i < 30 && emitting; i++) emitted.push(emitStored(3, 'ev-resume'))
  })()
  const s = await stream('deviceIds=ev-resume', { headers: { 'last-event-id': from } })
  await emitter
  emitting = false
  const later = (await Promise.all(emitted)).flat()
  const expected = [...before.slice(10), ...later].map(Number).sort((a, b) => a - b)
  await s.waitFor((c) => c.events().length >= expected.length, `${expected.length} events`).catch((err) => { t.log(s.frames.map((f) => f.event === 'dropped' ? 'dropped ' + f.data : (f.id ?? f.comment)).join(' ')); t.log(expected.join(' ')); throw err })
  // One more after the join: live, exactly once.
  const [last] = await emitStored(1, 'ev-resume')
  await s.waitFor((c) => c.events().some((e) => e.id === last), 'a live event after the replay')
  const got = s.events().map((e) => Number(e.id))
  t.is(new Set(got).size, got.length, 'no duplicate')
  t.deepEqual([...got].sort((a, b) => a - b), [...expected, Number(last)], 'no gap')
  t.true(got.every((id) => id > Number(from)))
  t.deepEqual(s.frames.filter((f) => f.event === 'device').map((f) => f.id), got.map(String), 'the id line is the event id')

  // ?lastEventId= works the same (EventSource cannot set headers on its first connect).
  const q = await stream(`deviceIds=ev-resume&lastEventId=${before[38]!}`)
  await q.waitFor((c) => c.events().some((e) => e.id === last), 'replay via the query parameter')
  t.is(q.events()[0]!.id, before[39])
})

test.serial('a replayed event whose live copy arrives after the stream went live is not sent twice', async (t) => {
  // Events are published after COMMIT, so a resume's replay can read one
  // before its live copy comes; that copy may come after the replay ended.
  const events = Array.from({ length: 5 }, () => ({ kind: 'device' as const, type: 'updated', deviceId: 'ev-late', data: {} }))
  const stored = await withTransaction(broker.app.pool, (client) => writeChanges(client, SYSTEM_ACTOR, [], events))
  const from = stored[0]!.id!
  const s = await stream('deviceIds=ev-late', { headers: { 'last-event-id': from } })
  await s.waitFor((c) => c.events().length >= 4, 'the replay of the 4 committed events')
  // The live copies of the replayed ones come now, late; then a new event.
  // (The resume point's own live copy would be sent: an id at or below it
  // arriving live is taken for a late commit, as documented.)
  broker.app.events.publish(stored.slice(1))
  const [fresh] = await emitStored(1, 'ev-late')
  await s.waitFor((c) => c.events().some((e) => e.id === fresh), 'the new live event')
  t.deepEqual(s.events().map((e) => e.id), [...stored.slice(1).map((e) => e.id), fresh])
})

test.serial('a slow consumer: bounded buffer, then a dropped event with the count', async (t) => {
  const s = await stream('kinds=device&deviceIds=ev-slow')
  await s.waitFor((c) => c.frames.length >= 1, 'connected')
  s.pause()
  // 64 KiB events; the client reads none of them for a while.
  const big = 'x'.repeat(64 * 1024)
  const N = 1000
  const published: FleetEvent[] = []
  for (let i = 0; i < N; i++) {
    const e: FleetEvent = { kind: 'device', type: 'updated', at: new Date().toISOString(), deviceId: 'ev-slow', data: { i, big } }
    published.push(e)
    broker.app.events.publish([e])
    if (i % 20 === 0) await new Promise((resolve) => setImmediate(resolve))
  }
  const metric = async () => (await broker.app.metrics.eventsDropped.get()).values[0]?.value ?? 0
  await waitFor(async () => (await metric()) > 0, { what: 'events dropped on the server' })
  s.resume()
  await s.waitFor((c) => c.dropped().length > 0, 'a dropped event')
  await s.waitFor((c) => c.events().length + c.dropped().reduce((a, b) => a + b, 0) >= N, 'every event sent or counted')
  const received = s.events()
  const dropped = s.dropped().reduce((a, b) => a + b, 0)
  t.is(received.length + dropped, N, 'each event is either received or counted as dropped')
  // Received: the 50 of the buffer, what the socket buffers of both ends
  // held (a few MB on loopback), and what was sent after the client resumed.
  t.true(dropped >= N / 2, `most were dropped, not buffered (${dropped} dropped)`)
  // What was received is in order, and the dropped frame follows the events queued before the loss.
  const is = received.map((e) => e.data.i as number)
  t.deepEqual(is, [...is].sort((a, b) => a - b))
  t.is(await metric(), dropped)
  // The stream works on after catching up.
  broker.app.events.publish([{ kind: 'device', type: 'deleted', at: new Date().toISOString(), deviceId: 'ev-slow', data: {} }])
  await s.waitFor((c) => c.events().some((e) => e.type === 'deleted'), 'a live event after the drop')
})

test.serial('a committed batch larger than the buffer reaches a client that reads, whole', async (t) => {
  // Two streams with the same filter share one subscription (one chunk per turn).
  const [s1, s2] = await Promise.all([stream('kinds=telemetry&deviceIds=ev-batch'), stream('kinds=telemetry&deviceIds=ev-batch')])
  const creds = await broker.app.devices.create({ id: 'ev-batch' })
  const client = await connectDevice(broker.url, creds.id, creds.secret)
  // 200 readings in one message: one batch, four times EVENTS_STREAM_BUFFER (50).
  await client.publishAsync(`devices/${creds.id}/telemetry`, JSON.stringify(Array.from({ length: 200 }, (_, i) => ({ i }))), { qos: 1 })
  await client.endAsync()
  for (const s of [s1!, s2!]) {
    await s.waitFor((c) => c.events().length >= 200, '200 telemetry events')
    t.deepEqual(s.events().map((e) => e.data.reading.i), Array.from({ length: 200 }, (_, i) => i))
    t.deepEqual(s.dropped(), [])
  }
})

test.serial('stream limits: per token and in total, 429 too_many_streams; heartbeat comments', async (t) => {
  const mine = await Promise.all([1, 2, 3, 4].map(() => stream('kinds=rollout')))
  t.true(mine.every((s) => s.status === 200))
  const fifth = await stream('kinds=rollout')
  t.is(fifth.status, 429)
  t.is(JSON.parse(fifth.body).code, 'too_many_streams')
  t.regex(JSON.parse(fifth.body).detail, /EVENTS_MAX_STREAMS_PER_TOKEN/)
  const created = await api(broker.app, 'POST', '/v1/tokens', { name: 'watcher', scopes: ['read'] })
  t.is(created.status, 201)
  const other = created.body.token as string
  const theirs = await Promise.all([1, 2].map(() => stream('kinds=rollout', { token: other })))
  t.true(theirs.every((s) => s.status === 200))
  const seventh = await stream('kinds=rollout', { token: other })
  t.is(seventh.status, 429)
  t.regex(JSON.parse(seventh.body).detail, /EVENTS_MAX_STREAMS\b/)
  // A closed stream frees its place.
  mine[0]!.close()
  await waitFor(async () => (await broker.app.metrics.eventStreams.get()).values[0]?.value === 5, { what: 'the server saw the stream close' })
  const again = await stream('kinds=rollout')
  t.is(again.status, 200)
  // Heartbeat: a comment every EVENTS_HEARTBEAT_MS (300 ms here) on an idle stream.
  await again.waitFor((c) => c.frames.filter((f) => f.comment === 'ping').length >= 2, 'two heartbeats')
  // No token: 401 (read scope needed).
  const anonymous = await openEvents(broker.app.httpPort, '', { token: 'wrong-token-0123456789' })
  open.push(anonymous)
  t.is(anonymous.status, 401)
})

test.serial('stored events past EVENT_RETENTION_HOURS are deleted; shutdown ends open streams', async (t) => {
  const other = await startTestBroker({ EVENT_RETENTION_HOURS: 1 })
  const sql = new pg.Client({ connectionString: other.db.url })
  await sql.connect()
  await sql.query('INSERT INTO fleet_events (kind, type, at) SELECT \'device\', \'updated\', now() - interval \'2 hours\' FROM generate_series(1, 12000)')
  await sql.query('INSERT INTO fleet_events (kind, type) VALUES (\'device\', \'updated\')')
  const s = await openEvents(other.app.httpPort, 'kinds=device')
  t.is(s.status, 200)
  const t0 = Date.now()
  await other.app.close()
  t.true(Date.now() - t0 < 10_000, 'the shutdown did not wait on the open stream')
  await waitFor(() => s.ended, { what: 'the stream ended by the shutdown' })
  // The job runs every RETENTION_INTERVAL_MS (an hour by default); here it is run at once on that database.
  const { createEventRetention } = await import('../../broker/fleet/event-retention.js')
  const { createLogger } = await import('../../broker/logger.js')
  const pool = new pg.Pool({ connectionString: other.db.url, max: 2 })
  const retention = createEventRetention({ pool, retentionHours: 1, intervalMs: 3_600_000, log: createLogger({ level: 'silent' }) })
  t.is(await retention.run(), 12000)
  await retention.close()
  const { rows } = await sql.query<{ n: number }>('SELECT count(*)::int AS n FROM fleet_events')
  t.is(rows[0]!.n, 1)
  await pool.end()
  await sql.end()
  await other.db.drop()
})

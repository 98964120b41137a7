// Issue 5: metrics, health and readiness, logs, retention.
import test from 'ava'
import { Writable } from 'node:stream'
import pg from 'pg'
import parsePrometheusTextFormat from 'parse-prometheus-text-format'
import { startTestBroker, connectDevice, connackCode, api, TEST_ADMIN_TOKEN } from '../helpers/broker.js'
import { createTestDatabase } from '../helpers/database.js'
import { createLogger } from '../../broker/logger.js'
import { waitFor } from '../helpers/wait.js'
import { T0 } from '../helpers/time.js'

type Family = { name: string, type: string, metrics: Array<{ labels?: Record<string, string>, value?: string, count?: string }> }

async function scrape (app: { http: { inject: (o: { method: 'GET', url: string }) => Promise<{ statusCode: number, body: string, headers: Record<string, unknown> }> } }) {
  const res = await app.http.inject({ method: 'GET', url: '/metrics' })
  const families = parsePrometheusTextFormat(res.body) as Family[]
  // Sums the samples of a counter or gauge, or the _count of a histogram,
  // whose labels include `labels` (read from the text itself).
  const value = (name: string, labels: Record<string, string> = {}) => {
    const f = families.find((x) => x.name === name)
    if (!f) return undefined
    const sample = f.type === 'HISTOGRAM' ? `${name}_count` : name
    let total = 0
    for (const line of res.body.split('\n')) {
      const m = /^([a-z_]+)(?:\{(.*)\})? ([-\d.e+]+)$/i.exec(line)
      if (!m || m[1] !== sample) continue
      const got = Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]))
      if (Object.entries(labels).every(([k, v]) => got[k] === v)) total += Number(m[3])
    }
    return total
  }
  return { res, families, value }
}

function captureLogs () {
  const lines: string[] = []
  const stream = new Writable({ write (chunk, _enc, cb) { lines.push(chunk.toString()); cb() } })
  return { lines, log: createLogger({ level: 'debug', destination: stream }) }
}

test('/metrics parses as Prometheus text, uses the fleetgate_ prefix and moves with traffic', async (t) => {
  const broker = await startTestBroker()
  const before = await scrape(broker.app)
  t.is(before.res.statusCode, 200)
  t.regex(String(before.res.headers['content-type']), /text\/plain/)
  t.true(before.families.every((f) => f.name.startsWith('fleetgate_')), 'own registry, no global default metrics')
  t.true(before.families.every((f) => f.metrics.every((m) => !Object.keys(m.labels ?? {}).some((k) => /device|client/.test(k)))), 'no per-device labels')

  const dev = await broker.app.devices.create({ id: 'metrics-1' })
  t.is(await connackCode(broker.url, { clientId: dev.id, username: dev.id, password: 'wrong' }), 4)
  const client = await connectDevice(broker.url, dev.id, dev.secret)
  await client.publishAsync('devices/metrics-1/telemetry', JSON.stringify({ ts: T0, v: 1 }), { qos: 1 })
  await client.publishAsync('devices/metrics-1/telemetry', '{broken', { qos: 1 })
  await api(broker.app, 'GET', '/v1/devices/metrics-1')
  const after = await scrape(broker.app)
  t.is(after.value('fleetgate_mqtt_connack_refusals_total', { code: '4' }), (before.value('fleetgate_mqtt_connack_refusals_total', { code: '4' }) ?? 0) + 1)
  t.is(after.value('fleetgate_ingest_dead_letters_total', { reason: 'invalid_json' }), 1)
  t.true(after.value('fleetgate_ingest_rows_committed_total')! >= 2)
  t.true(after.value('fleetgate_ingest_batch_rows')! >= 1, 'batch size histogram counts batches')
  t.true(after.value('fleetgate_ingest_ack_latency_seconds')! >= 2)
  t.is(after.value('fleetgate_mqtt_connected_clients'), 1)
  t.is(after.value('fleetgate_mqtt_publishes_received_total', { topic_class: 'telemetry', qos: '1' }), 2)
  t.true(after.value('fleetgate_http_request_duration_seconds', { route: '/v1/devices/:id', status: '200' })! >= 1)
  t.truthy(after.families.find((f) => f.name === 'fleetgate_db_pool_connections'))
  t.is(after.value('fleetgate_ingest_queue_capacity_rows'), 40_000)
  await client.endAsync()
  await waitFor(async () => (await scrape(broker.app)).value('fleetgate_mqtt_disconnects_total', { reason: 'clean' }) === 1)
  await broker.close()
  await broker.db.drop()
})

test('readiness flips: not ready during start-up, ready, not ready while the database is unreachable, not ready while draining', async (t) => {
  const db = await createTestDatabase()
  let duringStartup: { status: number, body: { reason?: string } } | undefined
  let health: number | undefined
  const broker = await startTestBroker({}, db, {
    onHttpListening: async (port) => {
      const r = await fetch(`http://127.0.0.1:${port}/readyz`)
      duringStartup = { status: r.status, body: await r.json() as { reason?: string } }
      health = (await fetch(`http://127.0.0.1:${port}/healthz`)).status
    }
  })
  t.is(duringStartup?.status, 503)
  t.regex(duringStartup!.body.reason!, /migrations/)
  t.is(health, 200, 'alive while starting')
  t.is((await api(broker.app, 'GET', '/readyz', undefined, null)).status, 200)

  // Database loss: refuse new connections and cut the existing ones.
  const admin = new pg.Client({ connectionString: process.env.FLEETGATE_TEST_ADMIN_URL })
  await admin.connect()
  await admin.query(`ALTER DATABASE ${db.name} ALLOW_CONNECTIONS false`)
  await admin.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1', [db.name])
  const down = await waitFor(async () => { const r = await api(broker.app, 'GET', '/readyz', undefined, null); return r.status === 503 ? r : undefined }, { what: 'not ready' })
  t.regex(down.body.reason, /database/)
  t.is((await api(broker.app, 'GET', '/healthz', undefined, null)).status, 200, 'a database outage is not a liveness failure')
  await admin.query(`ALTER DATABASE ${db.name} ALLOW_CONNECTIONS true`)
  await waitFor(async () => (await api(broker.app, 'GET', '/readyz', undefined, null)).status === 200, { what: 'ready again' })
  await admin.end()

  const closing = broker.app.close()
  const drain = await api(broker.app, 'GET', '/readyz', undefined, null)
  t.is(drain.status, 503)
  t.is(drain.body.reason, 'draining')
  await closing
  await db.drop()
})

test('secrets and tokens never reach the logs', async (t) => {
  const { lines, log } = captureLogs()
  log.info({ password: 'p-123', secret: 's-456', token: 't-789', headers: { authorization: 'Bearer abc' }, nested: { secret: 's-000' } }, 'x')
  const text = lines.join('')
  for (const s of ['p-123', 's-456', 't-789', 'Bearer abc', 's-000']) t.false(text.includes(s), s)
  t.regex(text, /\[redacted\]/)

  const cap = captureLogs()
  const broker = await startTestBroker({}, undefined, { log: cap.log })
  const created = await api(broker.app, 'POST', '/v1/devices', { id: 'log-1' })
  t.is(await connackCode(broker.url, { clientId: 'log-1', username: 'log-1', password: 'a-wrong-password-42' }), 4)
  const client = await connectDevice(broker.url, 'log-1', created.body.secret)
  await client.endAsync()
  await broker.close()
  const all = cap.lines.join('')
  t.true(all.includes('connection refused'), 'refusals are logged')
  t.regex(all, /"reqId":"[^"]+"/, 'request ids are in the context')
  for (const s of [created.body.secret, 'a-wrong-password-42', TEST_ADMIN_TOKEN]) t.false(all.includes(s), 'no secret in logs')
  await broker.db.drop()
})

test('a command result is logged with the correlation id of the request that created it', async (t) => {
  const cap = captureLogs()
  const broker = await startTestBroker({}, undefined, { log: cap.log })
  const dev = (await api(broker.app, 'POST', '/v1/devices', { id: 'corr-1' })).body
  const client = await connectDevice(broker.url, dev.id, dev.secret)
  await client.subscribeAsync('devices/corr-1/commands/+', { qos: 1 })
  const cmd = (await api(broker.app, 'POST', '/v1/devices/corr-1/commands', { name: 'x' }, undefined, { 'x-request-id': 'trace-abc' })).body
  await client.publishAsync(`devices/corr-1/commands/${cmd.id}/result`, JSON.stringify({ status: 'succeeded' }), { qos: 1 })
  await client.endAsync()
  await broker.close()
  const entries = cap.lines.flatMap((l) => l.trim().split('\n')).map((l) => JSON.parse(l) as Record<string, unknown>)
  t.true(entries.some((e) => e.msg === 'command created' && e.correlationId === 'trace-abc'))
  t.true(entries.some((e) => e.msg === 'command result recorded' && e.correlationId === 'trace-abc' && e.commandId === cmd.id))
  await broker.db.drop()
})

test('retention: partitions are created ahead and old ones dropped; a reading outside the window is dead-lettered', async (t) => {
  const broker = await startTestBroker({ TELEMETRY_RETENTION_DAYS: 2, TELEMETRY_MAX_FUTURE_MS: 60_000 })
  const db = new pg.Client({ connectionString: broker.db.url })
  await db.connect()
  const partitions = async () => (await db.query<{ name: string }>(
    "SELECT c.relname AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'telemetry'::regclass ORDER BY 1")).rows.map((r) => r.name)
  const day = (offset: number) => 'telemetry_' + new Date(Date.now() + offset * 86_400_000).toISOString().slice(0, 10).replace(/-/g, '')
  // An old partition (e.g. from before a shorter retention) with data in it.
  await db.query('SELECT fleetgate_ensure_telemetry_partitions(fleetgate_utc_today() - 10, fleetgate_utc_today() - 10)')
  await db.query('INSERT INTO telemetry VALUES (\'x\', now() - interval \'10 days\', 1, now(), \'{}\')')
  t.true((await partitions()).includes(day(-10)))
  const r = await broker.app.retention.run()
  t.true(r.ran)
  const after = await partitions()
  t.false(after.includes(day(-10)), 'dropped')
  for (const d of [-2, -1, 0, 1, 2, 3]) t.true(after.includes(day(d)), `partition for day ${d}`)

  const dev = await broker.app.devices.create({ id: 'window-1' })
  const client = await connectDevice(broker.url, dev.id, dev.secret)
  for (const ts of [Date.now() - 5 * 86_400_000, Date.now() + 3_600_000]) {
    await client.publishAsync('devices/window-1/telemetry', JSON.stringify({ ts, v: 1 }), { qos: 1 })
  }
  await client.publishAsync('devices/window-1/telemetry', JSON.stringify({ ts: Date.now() - 86_400_000, v: 2 }), { qos: 1 })
  await client.endAsync()
  const dl = (await db.query("SELECT reason, detail FROM dead_letters WHERE device_id = 'window-1'")).rows
  t.deepEqual(dl.map((x) => x.reason), ['ts_out_of_window', 'ts_out_of_window'])
  t.regex(dl[0].detail, /outside the accepted window/)
  t.is(Number((await db.query("SELECT count(*) AS n FROM telemetry WHERE device_id = 'window-1'")).rows[0].n), 1)
  await db.end()
  await broker.close()
  await broker.db.drop()
})

test('retention runs on one replica at a time when two processes share the database', async (t) => {
  const db = await createTestDatabase()
  const a = await startTestBroker({}, db)
  const b = await startTestBroker({}, db)
  // Replica A is in the middle of a run (holds the lock): B skips its round.
  const holder = new pg.Client({ connectionString: db.url })
  await holder.connect()
  await holder.query('SELECT pg_advisory_lock(7336421002)')
  t.false((await b.app.retention.run()).ran)
  t.false((await a.app.retention.run()).ran)
  await holder.query('SELECT pg_advisory_unlock(7336421002)')
  // Both at once: exactly one does the work.
  const results = await Promise.all([a.app.retention.run(), b.app.retention.run(), a.app.retention.run()])
  t.true(results.filter((r) => r.ran).length >= 1)
  t.true((await b.app.retention.run()).ran)
  const skipped = (await scrape(b.app)).value('fleetgate_retention_runs_total', { result: 'skipped_locked' })
  t.true(skipped! >= 1)
  await holder.end()
  await a.close(); await b.close()
  await db.drop()
})

test('the control-plane telemetry query uses the primary key index', async (t) => {
  const broker = await startTestBroker()
  const db = new pg.Client({ connectionString: broker.db.url })
  await db.connect()
  t.teardown(async () => { await db.end().catch(() => {}); await broker.close(); await broker.db.drop() })
  // All within yesterday (UTC), so one partition holds the data and the range.
  const base = Math.floor(Date.now() / 86_400_000) * 86_400_000 - 86_400_000 + 3_600_000
  await db.query(`INSERT INTO telemetry SELECT 'dev-' || (g % 200), to_timestamp($1 / 1000.0) + (g || ' seconds')::interval, g, now(), '{"v":1}'
                    FROM generate_series(1, 20000) g`, [base])
  await db.query('ANALYZE telemetry')
  const { rows } = await db.query(`EXPLAIN SELECT ts, received_at, payload FROM telemetry
     WHERE device_id = $1 AND ts >= $2 AND ts < $3 ORDER BY ts, reading_hash LIMIT 100`, ['dev-7', new Date(base), new Date(base + 3_600_000)])
  const plan = rows.map((r) => r['QUERY PLAN']).join('\n')
  t.regex(plan, /(Index (Only )?Scan using|Bitmap Index Scan on) telemetry_\d{8}_pkey/, plan)
  t.notRegex(plan, /Seq Scan/, plan)
})

test('the Grafana dashboard only queries metrics the broker exports', async (t) => {
  const { readFile } = await import('node:fs/promises')
  const dash = JSON.parse(await readFile('helm/fleetgate/dashboards/fleetgate.json', 'utf8')) as { panels: Array<{ title: string, targets: Array<{ expr: string }> }> }
  const broker = await startTestBroker({}, undefined, { defaultMetrics: true })
  const { families } = await scrape(broker.app)
  const names = new Set(families.map((f) => f.name))
  const used = dash.panels.flatMap((p) => p.targets.flatMap((x) => [...x.expr.matchAll(/fleetgate_[a-z0-9_]+/g)].map((m) => m[0])))
  t.true(used.length > 10)
  for (const m of used) t.true(names.has(m.replace(/_(bucket|count|sum)$/, '')), `${m} is exported`)
  for (const title of ['Connected devices', 'Ingest rate (rows committed/s)', 'Ingest queue depth', 'Batch flush latency', 'Dead letters by reason', 'PUBACK latency (publish → commit)']) {
    t.truthy(dash.panels.find((p) => p.title === title), title)
  }
  await broker.close()
  await broker.db.drop()
})

test('one access log line per request: method, route, status, time and the operator', async (t) => {
  const cap = captureLogs()
  const broker = await startTestBroker({}, undefined, { log: cap.log })
  await api(broker.app, 'POST', '/v1/devices', { id: 'access-1' }, undefined, { 'x-request-id': 'access-req-1' })
  await api(broker.app, 'GET', '/readyz', undefined, null)
  await broker.close()
  await broker.db.drop()
  const entries = cap.lines.flatMap((l) => l.trim().split('\n')).map((l) => JSON.parse(l) as Record<string, unknown>)
  const forRequest = entries.filter((e) => e.reqId === 'access-req-1')
  t.is(forRequest.filter((e) => e.msg === 'request').length, 1, 'one access line')
  t.false(forRequest.some((e) => e.msg === 'incoming request' || e.msg === 'request completed'), "fastify's two lines are gone")
  const line = forRequest.find((e) => e.msg === 'request')!
  t.like(line, { method: 'POST', route: '/v1/devices', url: '/v1/devices', status: 201, operator: 'admin' })
  t.is(typeof line.ms, 'number')
  t.false(entries.some((e) => e.msg === 'request' && e.route === '/readyz'), 'probes are not logged')
})

test('/metrics: fleetgate_build_info, and Node.js process metrics under their standard names', async (t) => {
  const broker = await startTestBroker({}, undefined, { defaultMetrics: true })
  const text = (await api(broker.app, 'GET', '/metrics', undefined, null)).body as string
  await broker.close()
  await broker.db.drop()
  t.regex(text, /^fleetgate_build_info\{version="\d+\.\d+\.\d+[^"]*",commit="[^"]+",aedes_version="\d+\.\d+\.\d+[^"]*",node_version="v\d+[^"]*"\} 1$/m)
  t.regex(text, /^process_cpu_seconds_total /m)
  t.regex(text, /^nodejs_eventloop_lag_seconds /m)
  t.false(/^fleetgate_process_|^fleetgate_nodejs_/m.test(text), 'no fleetgate_ prefix on the default metrics')
})

// `npm run bench` (scenario 5), or alone: `npm run -s build && node
// dist/simulator/bench-aggregate.js [--runs 50] [--fleet 1000]` — how long does a chart of a device's last day
// take (issue 13: under 200 ms for one device with one reading per second)?
// GET /v1/devices/{id}/telemetry/aggregate over 24 hours, bucket 1m and 5m,
// timed end to end over HTTP (N runs, p50/p99), for one device holding
// 86,400 readings (one a second for 24 h, inserted with INSERT … SELECT
// into the partitioned table):
//   alone     the device is the only one in the table (PostgreSQL reads its
//             partitions in sequence: it is all of them)
//   in fleet  the same device among --fleet others with a reading a minute
//             each (default 1,000: 1.44 M more rows), where PostgreSQL reads
//             each partition through its (device_id, ts) primary key
// Baselines in the same run, on the same data:
//   no index  the same SQL with index and bitmap scans switched off (what
//             the query costs without the (device, time) index: reading
//             every row of the two partitions), timed in PostgreSQL; the
//             query with the index is timed there too, for a like-for-like
//             ratio
//   paging    what a client did before this endpoint: fetch the raw
//             readings through GET /v1/devices/{id}/telemetry (1,000 a
//             page) and aggregate them itself
// Times on a shared machine grow with its load (printed: the load average
// at start and end); the CPU time the PostgreSQL backend spends on one
// query (/proc/<pid>/schedstat, with parallel workers off so the backend
// does all of it) does not, and is printed too.
// The SQL is imported from devices/telemetry-store.ts (aggregateQuery), so
// the in-database figures cannot drift from what the endpoint runs; like
// bench-insert-paths, a benchmark of an internal path may import it.
// Writes results/bench-aggregate.json.
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { loadavg } from 'node:os'
import { dirname } from 'node:path'
import { parseArgs } from 'node:util'
import pg from 'pg'
import { aggregateQuery, type BucketName } from '../devices/telemetry-store.js'
import { startBenchEnvironment } from './broker-under-test.js'
import { latencyHistogram, maxMs, percentileMs, recordMs } from './latency-histogram.js'

const { values: args } = parseArgs({
  options: {
    runs: { type: 'string', default: '50' },
    fleet: { type: 'string', default: '1000' },
    'paging-runs': { type: 'string', default: '3' },
    out: { type: 'string', default: 'results/bench-aggregate.json' }
  }
})
const RUNS = Number(args.runs)
const FLEET = Number(args.fleet)
const PAGING_RUNS = Number(args['paging-runs'])
const DEVICE = 'agg-bench'
const DAY_MS = 86_400_000
const GOAL_MS = 200

interface Timing { runs: number, p50Ms: number, p99Ms: number, maxMs: number }

async function time (runs: number, once: () => Promise<unknown>): Promise<Timing> {
  for (let i = 0; i < Math.min(3, runs); i++) await once() // warm-up: plans, caches
  const h = latencyHistogram()
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now()
    await once()
    recordMs(h, performance.now() - t0)
  }
  return { runs, p50Ms: percentileMs(h, 50, 1), p99Ms: percentileMs(h, 99, 1), maxMs: maxMs(h) }
}

interface PlanNode { 'Node Type': string, 'Relation Name'?: string, 'Index Name'?: string, Plans?: PlanNode[] }
const nodes = (n: PlanNode): PlanNode[] => [n, ...(n.Plans ?? []).flatMap(nodes)]

/** The scans of a plan, e.g. "Index Scan telemetry_20261128_pkey". */
async function scans (client: pg.ClientBase, q: { text: string, values: unknown[] }): Promise<string[]> {
  const { rows } = await client.query<{ 'QUERY PLAN': Array<{ Plan: PlanNode }> }>({ text: 'EXPLAIN (FORMAT JSON) ' + q.text, values: q.values })
  return [...new Set(nodes(rows[0]!['QUERY PLAN'][0]!.Plan).filter((n) => n['Node Type'].includes('Scan'))
    .map((n) => `${n['Node Type']} ${n['Index Name'] ?? n['Relation Name'] ?? ''}`.trim()))]
}

/**
 * The CPU time of a PostgreSQL backend so far (ms), from its schedstat
 * (nanoseconds on CPU); undefined when the server is not on this machine.
 */
async function cpuClock (client: pg.ClientBase): Promise<(() => Promise<number>) | undefined> {
  const pid = (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid
  const read = async () => Number((await readFile(`/proc/${pid}/schedstat`, 'utf8')).split(' ')[0]) / 1e6
  try { await read(); return read } catch { return undefined }
}

async function cpuTime (runs: number, clock: () => Promise<number>, once: () => Promise<unknown>): Promise<Timing> {
  const h = latencyHistogram()
  for (let i = 0; i < runs; i++) {
    const c0 = await clock()
    await once()
    recordMs(h, await clock() - c0)
  }
  return { runs, p50Ms: percentileMs(h, 50, 1), p99Ms: percentileMs(h, 99, 1), maxMs: maxMs(h) }
}

const loadAtStart = loadavg()[0]!
const env = await startBenchEnvironment({ name: 'aggregate' })
try {
  const broker = await env.fleetgate()
  const { api } = broker
  await api.json('POST', '/v1/devices', { id: DEVICE })
  const pool = new pg.Pool({ connectionString: env.databaseUrl, max: 2 })
  // The 24 hours end now: two daily partitions (the migrations create them
  // from yesterday to three days ahead). A reading looks like a sensor's.
  const to = new Date()
  const from = new Date(to.getTime() - DAY_MS)
  const t0 = Date.now()
  await pool.query(
    `INSERT INTO telemetry (device_id, ts, reading_hash, received_at, payload)
     SELECT $1, t, s, t, jsonb_build_object('ts', (extract(epoch FROM t) * 1000)::bigint, 'temp', round((21 + 4 * sin(s / 3600.0))::numeric, 2),
                                            'hum', round((45 + 10 * cos(s / 7200.0))::numeric, 1), 'battery', 3.7, 'fw', '1.4.2')
       FROM generate_series(0, 86_399) s, LATERAL (SELECT $2::timestamptz + make_interval(secs => s) AS t) x`, [DEVICE, from.toISOString()])
  await pool.query('ANALYZE telemetry')
  console.log(`${DEVICE}: 86,400 readings over 24 h inserted in ${Date.now() - t0} ms`)

  const scenarios: Record<string, unknown> = {}
  const measure = async (setting: string) => {
    const out: Record<string, unknown> = {}
    for (const bucket of ['1m', '5m'] as BucketName[]) {
      const url = `/v1/devices/${DEVICE}/telemetry/aggregate?field=temp&bucket=${bucket}&from=${from.toISOString()}&to=${to.toISOString()}`
      const check = await api.json<{ items: Array<{ count: number }> }>('GET', url)
      const counted = check.items.reduce((n, b) => n + b.count, 0)
      if (counted !== 86_400) throw new Error(`bucket ${bucket}: the aggregate counted ${counted} readings of 86,400`)
      const q = aggregateQuery(DEVICE, { path: ['temp'], bucket, from: from.toISOString(), to: to.toISOString() })
      const api_ = await time(RUNS, () => api.json('GET', url))
      const client = await pool.connect()
      try {
        const plan = await scans(client, q)
        const sql = await time(RUNS, () => client.query(q))
        const clock = await cpuClock(client)
        await client.query('SET max_parallel_workers_per_gather = 0')
        const cpu = clock && await cpuTime(RUNS, clock, () => client.query(q))
        await client.query('RESET max_parallel_workers_per_gather')
        await client.query('SET enable_indexscan = off; SET enable_bitmapscan = off')
        const noIndexPlan = await scans(client, q)
        const noIndex = await time(Math.max(5, Math.round(RUNS / 5)), () => client.query(q))
        await client.query('RESET enable_indexscan; RESET enable_bitmapscan')
        out[bucket] = { buckets: check.items.length, api: api_, sql, cpu, plan, noIndex, noIndexPlan }
        console.log(`${setting.padEnd(9)} bucket ${bucket} (${check.items.length} buckets): API p50 ${api_.p50Ms} ms p99 ${api_.p99Ms} ms | SQL p50 ${sql.p50Ms} ms, CPU p50 ${cpu?.p50Ms ?? '?'} ms p99 ${cpu?.p99Ms ?? '?'} ms [${plan.join(', ')}] | SQL without index p50 ${noIndex.p50Ms} ms [${noIndexPlan.join(', ')}]`)
      } finally { client.release() }
    }
    return out
  }
  scenarios.alone = await measure('alone')

  if (FLEET > 0) {
    const t1 = Date.now()
    await pool.query(
      `INSERT INTO telemetry (device_id, ts, reading_hash, received_at, payload)
       SELECT 'fleet-' || d, t, 0, t, jsonb_build_object('temp', round((18 + d % 10 + sin(m / 60.0))::numeric, 2), 'hum', 50)
         FROM generate_series(1, $1::int) d, generate_series(0, 1439) m, LATERAL (SELECT $2::timestamptz + make_interval(mins => m, secs => d % 60) AS t) x`,
      [FLEET, from.toISOString()])
    await pool.query('VACUUM ANALYZE telemetry')
    console.log(`fleet: ${FLEET} devices × 1,440 readings inserted in ${Date.now() - t1} ms`)
    scenarios.inFleet = await measure('in fleet')
  }

  // Baseline: every raw reading through the paged API, aggregated here.
  const paging = await time(PAGING_RUNS, async () => {
    const sums = new Map<number, { n: number, min: number, max: number, sum: number }>()
    let cursor: string | null = null
    let rows = 0
    do {
      const page: { items: Array<{ ts: string, payload: { temp?: unknown } }>, nextCursor: string | null } =
        await api.json('GET', `/v1/devices/${DEVICE}/telemetry?from=${from.toISOString()}&to=${to.toISOString()}&limit=1000${cursor ? `&cursor=${cursor}` : ''}`)
      for (const r of page.items) {
        rows++
        if (typeof r.payload.temp !== 'number') continue
        const start = Math.floor(Date.parse(r.ts) / 60_000) * 60_000
        const b = sums.get(start) ?? { n: 0, min: Infinity, max: -Infinity, sum: 0 }
        b.n++; b.min = Math.min(b.min, r.payload.temp); b.max = Math.max(b.max, r.payload.temp); b.sum += r.payload.temp
        sums.set(start, b)
      }
      cursor = page.nextCursor
    } while (cursor)
    if (rows !== 86_400) throw new Error(`paging read ${rows} readings of 86,400`)
  })
  console.log(`baseline  paging GET /telemetry (87 pages of 1,000) + aggregate in the client: p50 ${paging.p50Ms} ms p99 ${paging.p99Ms} ms (${paging.runs} runs)`)
  await pool.end()

  const main = (scenarios.inFleet ?? scenarios.alone) as Record<string, { api: Timing, sql: Timing, noIndex: Timing }>
  const checks = [
    { goal: `24 h, bucket 1m, p99 < ${GOAL_MS} ms (API, ${FLEET > 0 ? 'in fleet' : 'alone'})`, value: `${main['1m']!.api.p99Ms} ms`, ok: main['1m']!.api.p99Ms < GOAL_MS },
    { goal: `24 h, bucket 5m, p99 < ${GOAL_MS} ms (API, ${FLEET > 0 ? 'in fleet' : 'alone'})`, value: `${main['5m']!.api.p99Ms} ms`, ok: main['5m']!.api.p99Ms < GOAL_MS }
  ]
  for (const c of checks) console.log(`${c.ok ? '✔' : '✘'} ${c.goal}: ${c.value}`)
  console.log(`paging / aggregate endpoint (1m, p50): ${(paging.p50Ms / main['1m']!.api.p50Ms).toFixed(1)}×; SQL without / with index (1m, p50): ${(main['1m']!.noIndex.p50Ms / main['1m']!.sql.p50Ms).toFixed(1)}×`)
  const load = { start: Math.round(loadAtStart * 10) / 10, end: Math.round(loadavg()[0]! * 10) / 10 }
  console.log(`load average (1 min) at start ${load.start}, at end ${load.end}`)
  await mkdir(dirname(args.out!), { recursive: true })
  await writeFile(args.out!, JSON.stringify({ date: new Date().toISOString(), load, device: { readings: 86_400, rangeHours: 24 }, fleet: FLEET, runs: RUNS, scenarios, paging, checks }, null, 2))
} finally {
  await env.close()
}

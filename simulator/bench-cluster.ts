// `npm run bench:cluster` — scale-out (issue 6). On this one machine:
//   A. baseline: one broker process, 19,000 devices (the most one process
//      holds under a 20,000-file limit);
//   B. cluster: three broker processes sharing one PostgreSQL and one
//      redis-server, 57,000 devices spread over them (device i → replica
//      i % 3, as a load balancer would).
// In each phase the devices connect (subscribing to their config topic) at
// --rate connects/s from load-generator child processes (fewer than 20,000
// connections each), then one rollout is POSTed to the first replica and
// followed until every device has reported the new version. Reports the
// connect rate achieved, RSS per broker process (and Redis), and the rollout
// time, phase B next to phase A. Writes results/bench-cluster.json.
import { mkdir, writeFile } from 'node:fs/promises'
import { cpus } from 'node:os'
import { join, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { setTimeout as sleep } from 'node:timers/promises'
import pg from 'pg'
import { startBenchEnvironment, type BenchEnvironment, type FleetgateUnderTest } from './broker-under-test.js'
import { forkFleets } from './fleet-process.js'
import { provisionDevices } from './provisioning.js'
import { rssMb } from './process-stats.js'
import { CONFIG_FOLLOWER } from './virtual-device.js'

const { values: args } = parseArgs({
  options: {
    single: { type: 'string', default: '19000' },
    cluster: { type: 'string', default: '57000' },
    replicas: { type: 'string', default: '3' },
    rate: { type: 'string', default: '1500' },
    'per-worker': { type: 'string', default: '15000' },
    out: { type: 'string', default: 'results/bench-cluster.json' }
  }
})
const RATE = Number(args.rate)
const PER_WORKER = Number(args['per-worker'])

interface PhaseResult {
  phase: string
  replicas: number
  devices: number
  connected: number
  failed: number
  retries: number
  failureReasons: Record<string, number>
  connectSeconds: number
  connectsPerSecond: number
  brokerRssMb: number[]
  redisRssMb?: number
  rolloutAllReportedMs: number
  rolloutInSyncByApiMs: number
  rolloutMissing: number
}

/** A replica as the cluster benchmark runs it: at most 19,500 connections (under the 20,000-file limit). */
function startReplica (env: BenchEnvironment, extra: Record<string, string> = {}): Promise<FleetgateUnderTest> {
  return env.fleetgate({ MQTT_MAX_CONNECTIONS: '19500', ...extra })
}

// Statements running for more than 3 s while the rollout runs, with what
// they wait for and who blocks them: printed once each, for diagnosis.
function watchSlowStatements (databaseUrl: string): () => Promise<void> {
  const pool = new pg.Pool({ connectionString: databaseUrl, max: 1 })
  const seen = new Set<string>()
  const timer = setInterval(() => {
    pool.query<{ pid: number, started: string, age: number, wait_event_type: string | null, wait_event: string | null, blockers: number[], query: string, blocker_queries: string[] | null }>(
      `SELECT a.pid, a.query_start::text AS started, extract(epoch FROM now() - a.query_start)::float8 AS age,
              a.wait_event_type, a.wait_event, pg_blocking_pids(a.pid) AS blockers, left(a.query, 160) AS query,
              (SELECT array_agg(b.state || ': ' || left(b.query, 160)) FROM pg_stat_activity b WHERE b.pid = ANY(pg_blocking_pids(a.pid))) AS blocker_queries
         FROM pg_stat_activity a
        WHERE a.state = 'active' AND a.pid <> pg_backend_pid() AND now() - a.query_start > interval '3 seconds'
          AND a.query NOT LIKE 'LISTEN%' AND a.backend_type = 'client backend'`).then(({ rows }) => {
      for (const r of rows) {
        const key = `${r.pid}@${r.started}`
        if (seen.has(key)) continue
        seen.add(key)
        console.error(`slow statement: pid ${r.pid}, ${r.age.toFixed(1)} s, waiting ${r.wait_event_type ?? '-'}/${r.wait_event ?? '-'}, blocked by ${JSON.stringify(r.blockers)} ${JSON.stringify(r.blocker_queries ?? [])}: ${r.query.replace(/\s+/g, ' ')}`)
      }
    }, () => {})
  }, 1000)
  return async () => { clearInterval(timer); await pool.end() }
}

async function runPhase (phase: string, brokers: FleetgateUnderTest[], n: number, databaseUrl: string, redisPid?: number): Promise<PhaseResult> {
  const { api } = brokers[0]!
  const prefix = `${phase}-${n}`
  const devices = await provisionDevices(api, { count: n, idPrefix: prefix, labels: { bench: prefix } })
  const urls = brokers.map((b) => b.mqttUrl)
  const workers = Math.ceil(n / PER_WORKER)
  const reports = new Map<string, number>() // `${id}:${version}` → time
  console.error(`${phase}: connecting ${n} devices to ${brokers.length} broker process(es) from ${workers} load processes at ${RATE}/s`)
  const t0 = Date.now()
  const fleets = forkFleets(Array.from({ length: workers }, (_, w) => ({
    // Process w takes every workers-th device; device i goes to replica i % replicas,
    // from one loopback source address per process (ephemeral ports are per address).
    devices: devices.flatMap((d, i) => i % workers === w ? [{ ...d, broker: urls[i % urls.length]!, localAddress: `127.0.0.${10 + w}` }] : []),
    profile: CONFIG_FOLLOWER,
    load: { kind: 'idle' },
    rampPerSecond: RATE / workers,
    churnPerMinute: 0,
    seed: w + 1,
    recordAcks: false
  })), { configApplied: (id, version, at) => { reports.set(`${id}:${version}`, at) } })
  const ready = await fleets.settled()
  const { ready: connected, gaveUp: failed, retries, failureReasons: reasons } = ready
  const connectSeconds = (ready.lastReadyAt - t0) / 1000
  await sleep(2000) // presence flushes; RSS settles
  const brokerRssMb = await Promise.all(brokers.map((b) => rssMb(b.pid)))
  const redisRssMb = redisPid ? await rssMb(redisPid) : undefined
  console.error(`${phase}: ${connected} connected, ${failed} gave up, ${retries} retries ${JSON.stringify(reasons)}, in ${connectSeconds.toFixed(1)} s; broker RSS ${brokerRssMb.map((x) => x.toFixed(0)).join(', ')} MB`)

  // One rollout, posted to the first replica.
  const stopWatching = watchSlowStatements(databaseUrl)
  const t1 = Date.now()
  const ro = await api.json<{ id: string }>('POST', '/v1/rollouts', { selector: `bench=${prefix}`, config: { interval: 20 } })
  let inSyncMs = NaN
  while (Date.now() < t1 + 300_000) {
    const r = await api.json<{ counts: { inSync: number } }>('GET', `/v1/rollouts/${ro.id}`)
    if (r.counts.inSync >= connected) { inSyncMs = Date.now() - t1; break }
    await sleep(100)
  }
  // The devices report the rollout as version 1 (their first config);
  // their reports reach us in 50 ms batches.
  const reportedAll = () => devices.every((d) => reports.has(`${d.id}:1`))
  for (const end = Date.now() + 10_000; !reportedAll() && Date.now() < end;) await sleep(50)
  const times = devices.map((d) => reports.get(`${d.id}:1`))
  const missing = times.filter((x) => x === undefined).length
  await stopWatching()
  const allReportedMs = missing === 0 ? Math.max(...times as number[]) - t1 : NaN
  console.error(`${phase}: rollout to ${n} devices: all reported in ${allReportedMs} ms, all in sync by the API in ${inSyncMs} ms, ${missing} missing`)
  await fleets.stop(0)
  return {
    phase,
    replicas: brokers.length,
    devices: n,
    connected,
    failed,
    retries,
    failureReasons: reasons,
    connectSeconds,
    connectsPerSecond: Math.round(connected / connectSeconds),
    brokerRssMb: brokerRssMb.map((x) => Math.round(x)),
    ...(redisRssMb !== undefined ? { redisRssMb: Math.round(redisRssMb) } : {}),
    rolloutAllReportedMs: allReportedMs,
    rolloutInSyncByApiMs: inSyncMs,
    rolloutMissing: missing
  }
}

async function main () {
  const env = await startBenchEnvironment({ name: 'cluster' })
  const results: PhaseResult[] = []
  try {
    const single = Number(args.single)
    if (single > 0) {
      const b = await startReplica(env)
      results.push(await runPhase('single', [b], single, env.databaseUrl))
      await b.stop()
    }
    const n = Number(args.cluster)
    if (n > 0) {
      const redis = await env.redis()
      const replicas = await Promise.all(Array.from({ length: Number(args.replicas) }, () => startReplica(env, { REDIS_URL: redis.url })))
      results.push(await runPhase('cluster', replicas, n, env.databaseUrl, redis.pid))
      await Promise.all(replicas.map((r) => r.stop()))
    }
    console.log('\nphase     replicas  devices  connected  connects/s  broker RSS MB (each)   Redis RSS MB  rollout: all reported  in sync (API)')
    for (const r of results) {
      console.log(`${r.phase.padEnd(9)} ${String(r.replicas).padStart(8)} ${String(r.devices).padStart(8)} ${String(r.connected).padStart(10)} ${String(r.connectsPerSecond).padStart(11)}  ${r.brokerRssMb.join(' / ').padEnd(21)} ${String(r.redisRssMb ?? '-').padStart(13)} ${(r.rolloutAllReportedMs / 1000).toFixed(1).padStart(20)} s ${(r.rolloutInSyncByApiMs / 1000).toFixed(1).padStart(13)} s`)
    }
    const outPath = resolve(args.out!)
    await mkdir(join(outPath, '..'), { recursive: true })
    await writeFile(outPath, JSON.stringify({ date: new Date().toISOString(), machine: { cpus: cpus().length, node: process.version }, rate: RATE, results }, null, 2))
  } finally {
    await env.close()
  }
}
await main()

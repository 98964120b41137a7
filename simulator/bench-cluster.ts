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
import { Redis } from 'ioredis'
import { startBenchEnvironment, type BenchEnvironment, type FleetgateUnderTest } from './broker-under-test.js'
import { forkFleets } from './fleet-process.js'
import { provisionDevices } from './provisioning.js'
import { cpuSeconds, rssMb } from './process-stats.js'
import { CONFIG_FOLLOWER } from './virtual-device.js'

const { values: args } = parseArgs({
  options: {
    single: { type: 'string', default: '19000' },
    cluster: { type: 'string', default: '57000' },
    replicas: { type: 'string', default: '3' },
    rate: { type: 'string', default: '1500' },
    'per-worker': { type: 'string', default: '15000' },
    /** How long to follow the rollout before giving up on it (s). */
    'rollout-timeout': { type: 'string', default: '300' },
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
  /** CPU of each broker process while the devices connected, per device it accepted. */
  brokerCpuMsPerConnect: number[]
  redisRssMb?: number
  /** Redis commands (INFO commandstats) and Redis CPU seconds while the devices connected, per device connected. */
  redisCommandsPerConnect?: number
  redisCpuMsPerConnect?: number
  redisCommands?: Record<string, number>
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
  pool.on('error', () => {}) // a diagnostic: a lost connection must not end the benchmark
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

interface RedisCounters { commands: Record<string, number>, cpuSeconds: number }

/** Calls per command (INFO commandstats) and CPU seconds of the Redis server so far. */
async function redisCounters (redis: Redis): Promise<RedisCounters> {
  const commands: Record<string, number> = {}
  for (const m of (await redis.info('commandstats')).matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) commands[m[1]!] = Number(m[2])
  const cpu = await redis.info('cpu')
  const sys = Number(/^used_cpu_sys:([\d.]+)/m.exec(cpu)?.[1] ?? 0)
  const user = Number(/^used_cpu_user:([\d.]+)/m.exec(cpu)?.[1] ?? 0)
  return { commands, cpuSeconds: sys + user }
}

function diffCounters (before: RedisCounters, after: RedisCounters): RedisCounters {
  const commands: Record<string, number> = {}
  for (const [k, v] of Object.entries(after.commands)) {
    const d = v - (before.commands[k] ?? 0)
    if (d > 0) commands[k] = d
  }
  return { commands, cpuSeconds: after.cpuSeconds - before.cpuSeconds }
}

async function runPhase (phase: string, brokers: FleetgateUnderTest[], n: number, databaseUrl: string, redisServer?: { pid?: number, url: string }): Promise<PhaseResult> {
  const redisPid = redisServer?.pid
  const redis = redisServer ? new Redis(redisServer.url, { connectionName: 'bench-stats', maxRetriesPerRequest: 1 }) : undefined
  redis?.on('error', () => {}) // statistics only: Redis stopping with the run must not print errors
  const { api } = brokers[0]!
  const prefix = `${phase}-${n}`
  const devices = await provisionDevices(api, { count: n, idPrefix: prefix, labels: { bench: prefix } })
  const urls = brokers.map((b) => b.mqttUrl)
  const workers = Math.ceil(n / PER_WORKER)
  const reports = new Map<string, number>() // `${id}:${version}` → time
  console.error(`${phase}: connecting ${n} devices to ${brokers.length} broker process(es) from ${workers} load processes at ${RATE}/s`)
  const redisBefore = redis ? await redisCounters(redis) : undefined
  const cpuBefore = await Promise.all(brokers.map((b) => cpuSeconds(b.pid)))
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
  const cpuAfter = await Promise.all(brokers.map((b) => cpuSeconds(b.pid)))
  const brokerCpuMsPerConnect = cpuAfter.map((c, i) => Number(((c - cpuBefore[i]!) * 1000 / (connected / brokers.length)).toFixed(3)))
  console.error(`${phase}: broker CPU while connecting: ${brokerCpuMsPerConnect.join(' / ')} ms per device accepted`)
  const redisDuring = redis && redisBefore ? diffCounters(redisBefore, await redisCounters(redis)) : undefined
  const redisCommands = redisDuring ? Object.values(redisDuring.commands).reduce((a, b) => a + b, 0) : 0
  if (redisDuring) {
    const top = Object.entries(redisDuring.commands).sort((x, y) => y[1] - x[1]).map(([k, v]) => `${k} ${(v / connected).toFixed(2)}`).join(', ')
    console.error(`${phase}: Redis while connecting: ${(redisCommands / connected).toFixed(2)} commands and ${(redisDuring.cpuSeconds * 1000 / connected).toFixed(3)} ms CPU per connected device (${top})`)
  }
  await sleep(2000) // presence flushes; RSS settles
  const brokerRssMb = await Promise.all(brokers.map((b) => rssMb(b.pid)))
  const redisRssMb = redisPid ? await rssMb(redisPid) : undefined
  console.error(`${phase}: ${connected} connected, ${failed} gave up, ${retries} retries ${JSON.stringify(reasons)}, in ${connectSeconds.toFixed(1)} s; broker RSS ${brokerRssMb.map((x) => x.toFixed(0)).join(', ')} MB`)

  // One rollout, posted to the first replica.
  const stopWatching = watchSlowStatements(databaseUrl)
  const t1 = Date.now()
  const ro = await api.json<{ id: string }>('POST', '/v1/rollouts', { selector: `bench=${prefix}`, config: { interval: 20 } })
  let inSyncMs = NaN
  while (Date.now() < t1 + Number(args['rollout-timeout']) * 1000) {
    // A transient failure (a 500 while the database is starved on a shared
    // machine) is asked again, not the end of the run.
    const r = await api.json<{ counts: { inSync: number } }>('GET', `/v1/rollouts/${ro.id}`).catch((err: Error) => { console.error(`rollout status: ${err.message.slice(0, 160)}`); return undefined })
    if (r && r.counts.inSync >= connected) { inSyncMs = Date.now() - t1; break }
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
  redis?.disconnect()
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
    brokerCpuMsPerConnect,
    ...(redisRssMb !== undefined ? { redisRssMb: Math.round(redisRssMb) } : {}),
    ...(redisDuring ? { redisCommandsPerConnect: Number((redisCommands / connected).toFixed(2)), redisCpuMsPerConnect: Number((redisDuring.cpuSeconds * 1000 / connected).toFixed(3)), redisCommands: redisDuring.commands } : {}),
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
      results.push(await runPhase('cluster', replicas, n, env.databaseUrl, redis))
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

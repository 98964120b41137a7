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
import { fork, spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir, cpus } from 'node:os'
import { join, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { pino } from 'pino'
import pg from 'pg'
import { startEmbeddedPostgres, freePort } from '../broker/embedded-postgres.js'
import type { AgentConfig, AgentMessage } from './config-agent-worker.js'
import { rssMb, waitHttp } from './process-stats.js'
import { startRedisServer } from './redis-server.js'

const here = fileURLToPath(new URL('.', import.meta.url))
const root = join(here, '..', '..')
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
const TOKEN = 'bench-admin-token-' + Math.random().toString(36).slice(2)
const RATE = Number(args.rate)
const PER_WORKER = Number(args['per-worker'])

interface Broker { proc: ChildProcess, mqttUrl: string, api: string }
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

async function startBroker (env: Record<string, string>): Promise<Broker> {
  const mqttPort = await freePort(); const httpPort = await freePort()
  const proc = spawn(process.execPath, [join(root, 'dist', 'broker', 'main.js')], {
    env: {
      ...process.env,
      MQTT_PORT: String(mqttPort),
      HTTP_PORT: String(httpPort),
      MQTT_HOST: '127.0.0.1',
      HTTP_HOST: '127.0.0.1',
      LOG_LEVEL: 'warn',
      ADMIN_TOKEN: TOKEN,
      API_RATE_LIMIT_PER_MINUTE: '10000000',
      MQTT_MAX_CONNECTIONS: '19500',
      ...env
    },
    stdio: ['ignore', 'inherit', 'inherit']
  })
  const api = `http://127.0.0.1:${httpPort}`
  await waitHttp(`${api}/readyz`)
  return { proc, mqttUrl: `mqtt://127.0.0.1:${mqttPort}`, api }
}

async function stopBroker (b: Broker) {
  if (b.proc.exitCode !== null) return
  b.proc.kill('SIGTERM')
  await new Promise((resolve) => b.proc.once('exit', resolve))
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

async function runPhase (phase: string, brokers: Broker[], n: number, databaseUrl: string, redisPid?: number): Promise<PhaseResult> {
  const headers = { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' }
  const api = brokers[0]!.api
  const prefix = `${phase}-${n}`
  const bulk = await fetch(`${api}/v1/devices/bulk`, { method: 'POST', headers, body: JSON.stringify({ count: n, idPrefix: prefix, labels: { bench: prefix } }) })
  const devices = (await bulk.text()).trim().split('\n').map((l) => JSON.parse(l) as { id: string, secret: string })
  if (devices.length !== n) throw new Error(`provisioned ${devices.length} of ${n}`)
  const urls = brokers.map((b) => b.mqttUrl)
  const workers = Math.ceil(n / PER_WORKER)
  const reports = new Map<string, number>() // `${id}:${version}` → time
  const agents: ChildProcess[] = []
  console.error(`${phase}: connecting ${n} devices to ${brokers.length} broker process(es) from ${workers} load processes at ${RATE}/s`)
  const t0 = Date.now()
  const ready = await Promise.all(Array.from({ length: workers }, (_, w) => new Promise<Extract<AgentMessage, { type: 'ready' }>>((resolve) => {
    const child = fork(join(here, 'config-agent-worker.js'), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
    agents.push(child)
    child.on('message', (m: AgentMessage) => {
      if (m.type === 'ready') resolve(m)
      if (m.type === 'reported') for (const [id, v, at] of m.reports) reports.set(`${id}:${v}`, at)
    })
    // Worker w takes every workers-th device; device i goes to replica i % replicas.
    const slice = devices.flatMap((d, i) => i % workers === w ? [{ ...d, url: urls[i % urls.length]! }] : [])
    // One loopback source address per load process: ephemeral ports are per address.
    child.send({ url: urls[0]!, devices: slice, connectPerSecond: RATE / workers, localAddress: `127.0.0.${10 + w}` } satisfies AgentConfig)
  })))
  const connected = ready.reduce((a, r) => a + r.connected, 0)
  const failed = ready.reduce((a, r) => a + r.failed, 0)
  const retries = ready.reduce((a, r) => a + r.retries, 0)
  const reasons: Record<string, number> = {}
  for (const r of ready) for (const [k, v] of Object.entries(r.reasons)) reasons[k] = (reasons[k] ?? 0) + v
  const connectSeconds = (Math.max(...ready.map((r) => r.lastMs)) - t0) / 1000
  await sleep(2000) // presence flushes; RSS settles
  const brokerRssMb = await Promise.all(brokers.map((b) => rssMb(b.proc.pid!)))
  const redisRssMb = redisPid ? await rssMb(redisPid) : undefined
  console.error(`${phase}: ${connected} connected, ${failed} gave up, ${retries} retries ${JSON.stringify(reasons)}, in ${connectSeconds.toFixed(1)} s; broker RSS ${brokerRssMb.map((x) => x.toFixed(0)).join(', ')} MB`)

  // One rollout, posted to the first replica.
  const stopWatching = watchSlowStatements(databaseUrl)
  const t1 = Date.now()
  const ro = await (await fetch(`${api}/v1/rollouts`, { method: 'POST', headers, body: JSON.stringify({ selector: `bench=${prefix}`, config: { interval: 20 } }) })).json() as { id: string }
  let inSyncMs = NaN
  while (Date.now() < t1 + 300_000) {
    const r = await (await fetch(`${api}/v1/rollouts/${ro.id}`, { headers })).json() as { counts: { inSync: number } }
    if (r.counts.inSync >= connected) { inSyncMs = Date.now() - t1; break }
    await sleep(100)
  }
  // The agents report the rollout as version 1 (first config of these devices);
  // their reports reach us in 50 ms batches.
  const reportedAll = () => devices.every((d) => reports.has(`${d.id}:1`))
  for (const end = Date.now() + 10_000; !reportedAll() && Date.now() < end;) await sleep(50)
  const times = devices.map((d) => reports.get(`${d.id}:1`))
  const missing = times.filter((x) => x === undefined).length
  await stopWatching()
  const allReportedMs = missing === 0 ? Math.max(...times as number[]) - t1 : NaN
  console.error(`${phase}: rollout to ${n} devices: all reported in ${allReportedMs} ms, all in sync by the API in ${inSyncMs} ms, ${missing} missing`)
  for (const a of agents) a.send({ type: 'stop' })
  await Promise.all(agents.map((a) => new Promise((resolve) => a.once('exit', resolve))))
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
  const dir = await mkdtemp(join(tmpdir(), 'fleetgate-bench-cluster-'))
  const db = await startEmbeddedPostgres({ dataDir: dir, log: pino({ level: 'warn' }) })
  const redisDir = await mkdtemp(join(tmpdir(), 'fleetgate-bench-redis-'))
  const redis = await startRedisServer({ port: await freePort(), dir: redisDir })
  const results: PhaseResult[] = []
  const running: Broker[] = []
  try {
    const single = Number(args.single)
    if (single > 0) {
      const b = await startBroker({ DATABASE_URL: db.url })
      running.push(b)
      results.push(await runPhase('single', [b], single, db.url))
      await stopBroker(b)
    }
    const n = Number(args.cluster)
    if (n > 0) {
      const replicas = await Promise.all(Array.from({ length: Number(args.replicas) }, () => startBroker({ DATABASE_URL: db.url, REDIS_URL: redis.url })))
      running.push(...replicas)
      results.push(await runPhase('cluster', replicas, n, db.url, redis.pid))
      await Promise.all(replicas.map(stopBroker))
    }
    console.log('\nphase     replicas  devices  connected  connects/s  broker RSS MB (each)   Redis RSS MB  rollout: all reported  in sync (API)')
    for (const r of results) {
      console.log(`${r.phase.padEnd(9)} ${String(r.replicas).padStart(8)} ${String(r.devices).padStart(8)} ${String(r.connected).padStart(10)} ${String(r.connectsPerSecond).padStart(11)}  ${r.brokerRssMb.join(' / ').padEnd(21)} ${String(r.redisRssMb ?? '-').padStart(13)} ${(r.rolloutAllReportedMs / 1000).toFixed(1).padStart(20)} s ${(r.rolloutInSyncByApiMs / 1000).toFixed(1).padStart(13)} s`)
    }
    const outPath = resolve(args.out!)
    await mkdir(join(outPath, '..'), { recursive: true })
    await writeFile(outPath, JSON.stringify({ date: new Date().toISOString(), machine: { cpus: cpus().length, node: process.version }, rate: RATE, results }, null, 2))
  } finally {
    await Promise.all(running.map(stopBroker))
    await redis.kill()
    await db.stop()
    await rm(dir, { recursive: true, force: true })
    await rm(redisDir, { recursive: true, force: true })
  }
}
await main()

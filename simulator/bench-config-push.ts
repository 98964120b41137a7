// `npm run bench:config` — how long until every device runs a new config
// (issue 3). For N devices (default 1,000 and 10,000), all connected over real
// MQTT from child processes and applying config as the contract says:
//   1. parallel PUTs — one PUT /v1/devices/{id}/config per device, 64 at a time
//   2. one rollout   — POST /v1/rollouts for all of them, unbounded rate
// Reports the time from the start until each device's report was recorded
// (p50/p99/max) and, for the rollout, until GET /v1/rollouts/{id} counted
// every device in sync. Writes results/bench-config-push.json.
import { fork, spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir, cpus } from 'node:os'
import { join, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'

import { pino } from 'pino'
import { startEmbeddedPostgres, freePort } from '../broker/embedded-postgres.js'
import type { AgentConfig, AgentMessage } from './config-agent-worker.js'
import { waitHttp } from './process-stats.js'

const here = fileURLToPath(new URL('.', import.meta.url))
const root = join(here, '..', '..')
const { values: args } = parseArgs({ options: { sizes: { type: 'string', default: '1000,10000' }, bulk: { type: 'string', default: '100000' }, workers: { type: 'string', default: '2' }, out: { type: 'string', default: 'results/bench-config-push.json' } } })
const SIZES = args.sizes!.split(',').map(Number)
const WORKERS = Number(args.workers)
const TOKEN = 'bench-admin-token-' + Math.random().toString(36).slice(2)

const pct = (xs: number[], p: number) => xs.length === 0 ? NaN : [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.ceil(p / 100 * xs.length) - 1)]!

async function main () {
  const dir = await mkdtemp(join(tmpdir(), 'fleetgate-bench-config-'))
  const db = await startEmbeddedPostgres({ dataDir: dir, log: pino({ level: 'warn' }) })
  const mqttPort = await freePort(); const httpPort = await freePort()
  const broker = spawn(process.execPath, [join(root, 'dist', 'broker', 'main.js')], {
    env: { ...process.env, DATABASE_URL: db.url, MQTT_PORT: String(mqttPort), HTTP_PORT: String(httpPort), MQTT_HOST: '127.0.0.1', HTTP_HOST: '127.0.0.1', LOG_LEVEL: 'warn', ADMIN_TOKEN: TOKEN, API_RATE_LIMIT_PER_MINUTE: '10000000' },
    stdio: ['ignore', 'inherit', 'inherit']
  })
  const api = `http://127.0.0.1:${httpPort}`
  const headers = { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' }
  await waitHttp(`${api}/readyz`)
  const results: unknown[] = []
  let bulkResult: { devices: number, ms: number } | undefined
  try {
    // Provisioning a fleet: POST /v1/devices/bulk, read the whole NDJSON stream.
    const bulkN = Number(args.bulk)
    if (bulkN > 0) {
      const tb = Date.now()
      const res = await fetch(`${api}/v1/devices/bulk`, { method: 'POST', headers, body: JSON.stringify({ count: bulkN, idPrefix: 'bulk', labels: { bench: 'bulk' } }) })
      const lines = (await res.text()).trim().split('\n').filter((l) => l.includes('"secret"')).length
      bulkResult = { devices: lines, ms: Date.now() - tb }
      console.log(`bulk provisioning: ${lines} devices with credentials in ${bulkResult.ms} ms`)
    }
    for (const n of SIZES) {
      const prefix = `cfg${n}`
      const bulk = await fetch(`${api}/v1/devices/bulk`, { method: 'POST', headers, body: JSON.stringify({ count: n, idPrefix: prefix, labels: { bench: prefix } }) })
      const devices = (await bulk.text()).trim().split('\n').map((l) => JSON.parse(l) as { id: string, secret: string })
      const agents: ChildProcess[] = []
      const reports = new Map<string, number>() // `${id}:${version}` → time
      await Promise.all(Array.from({ length: WORKERS }, (_, w) => new Promise<void>((resolve, reject) => {
        const child = fork(join(here, 'config-agent-worker.js'), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
        agents.push(child)
        child.on('message', (m: AgentMessage) => {
          if (m.type === 'ready') { if (m.failed > 0) reject(new Error(`${m.failed} devices failed to connect`)); else resolve() }
          if (m.type === 'reported') for (const [id, v, at] of m.reports) reports.set(`${id}:${v}`, at)
        })
        child.send({ url: `mqtt://127.0.0.1:${mqttPort}`, devices: devices.filter((_, i) => i % WORKERS === w), connectPerSecond: 2000 / WORKERS } satisfies AgentConfig)
      })))
      console.error(`${n} devices connected`)

      // 1. parallel PUTs (version 1 for every device)
      const t0 = Date.now()
      let next = 0
      await Promise.all(Array.from({ length: 64 }, async () => {
        while (next < devices.length) {
          const d = devices[next++]!
          const r = await fetch(`${api}/v1/devices/${d.id}/config`, { method: 'PUT', headers, body: JSON.stringify({ config: { interval: 10 } }) })
          if (!r.ok) throw new Error(`PUT ${r.status}`)
          await r.arrayBuffer()
        }
      }))
      const putsDone = Date.now() - t0
      const deadline = Date.now() + 120_000
      while (devices.some((d) => !reports.has(`${d.id}:1`)) && Date.now() < deadline) await sleep(20)
      const putLat = devices.map((d) => (reports.get(`${d.id}:1`) ?? NaN) - t0)
      const putMissing = putLat.filter((x) => Number.isNaN(x)).length

      // 2. one rollout (version 2 for every device)
      const t1 = Date.now()
      const ro = await (await fetch(`${api}/v1/rollouts`, { method: 'POST', headers, body: JSON.stringify({ selector: `bench=${prefix}`, config: { interval: 20 } }) })).json() as { id: string }
      let apiComplete = NaN
      while (Date.now() < t1 + 120_000) {
        const r = await (await fetch(`${api}/v1/rollouts/${ro.id}`, { headers })).json() as { counts: { inSync: number } }
        if (r.counts.inSync === n) { apiComplete = Date.now() - t1; break }
        await sleep(50)
      }
      const roLat = devices.map((d) => (reports.get(`${d.id}:2`) ?? NaN) - t1)
      const roMissing = roLat.filter((x) => Number.isNaN(x)).length
      const good = (xs: number[]) => xs.filter((x) => !Number.isNaN(x))
      const row = {
        devices: n,
        parallelPuts: { putsMs: putsDone, p50Ms: pct(good(putLat), 50), p99Ms: pct(good(putLat), 99), maxMs: Math.max(...good(putLat)), missing: putMissing },
        rollout: { p50Ms: pct(good(roLat), 50), p99Ms: pct(good(roLat), 99), maxMs: Math.max(...good(roLat)), allInSyncByApiMs: apiComplete, missing: roMissing }
      }
      results.push(row)
      console.log(JSON.stringify(row))
      for (const a of agents) a.send({ type: 'stop' })
      await Promise.all(agents.map((a) => new Promise((resolve) => a.once('exit', resolve))))
    }
    console.log('\ndevices  method          p50 ms   p99 ms   max ms   all in sync (API)   missing')
    for (const r of results as Array<{ devices: number, parallelPuts: Record<string, number>, rollout: Record<string, number> }>) {
      console.log(`${String(r.devices).padStart(7)}  parallel PUTs ${String(r.parallelPuts.p50Ms).padStart(8)} ${String(r.parallelPuts.p99Ms).padStart(8)} ${String(r.parallelPuts.maxMs).padStart(8)} ${'-'.padStart(19)} ${String(r.parallelPuts.missing).padStart(9)}`)
      console.log(`${String(r.devices).padStart(7)}  one rollout   ${String(r.rollout.p50Ms).padStart(8)} ${String(r.rollout.p99Ms).padStart(8)} ${String(r.rollout.maxMs).padStart(8)} ${String(r.rollout.allInSyncByApiMs).padStart(19)} ${String(r.rollout.missing).padStart(9)}`)
    }
    const outPath = resolve(args.out!)
    await mkdir(join(outPath, '..'), { recursive: true })
    await writeFile(outPath, JSON.stringify({ date: new Date().toISOString(), machine: { cpus: cpus().length, node: process.version }, bulk: bulkResult, results }, null, 2))
  } finally {
    broker.kill('SIGTERM')
    await new Promise((resolve) => broker.once('exit', resolve))
    await db.stop()
    await rm(dir, { recursive: true, force: true })
  }
}
await main()

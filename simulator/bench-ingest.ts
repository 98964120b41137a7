// `npm run bench:ingest` — the ingest benchmark of issue 2 (not a test).
//
// Everything on this machine: a real PostgreSQL (embedded, durable settings),
// the broker as its own process, and the load from child processes that speak
// only the public contract (MQTT topics, the device CLI). Scenarios, in one run
// and with the same load generator:
//   1. baseline  — plain aedes (same version, in memory, stores nothing), with a
//                  shallow (--window, 4) and a deep (--deep-window, 64) number of
//                  outstanding QoS 1 messages per device, as fast as PUBACKs allow
//   2. saturate  — fleetgate, QoS 1, ack after commit, same two windows
//   3. half      — fleetgate at half its best stored rate: PUBACK latency
//   4. overload  — fleetgate with 4× the deep window: it slows publishers down,
//                  memory stays bounded, nothing crashes
// Prints a table, writes results/bench-ingest.json.
import { fork, spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir, cpus } from 'node:os'
import { join, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import pg from 'pg'
import * as hdr from 'hdr-histogram-js'
import { pino } from 'pino'
import { startEmbeddedPostgres, freePort } from '../broker/embedded-postgres.js'
import type { WorkerConfig, WorkerDevice, WorkerMessage } from './load-worker.js'
import { cpuDelta, cpuSeconds, postgresCpuSeconds, rssMb, waitHttp } from './process-stats.js'
import { startMosquitto } from './mosquitto.js'

const here = fileURLToPath(new URL('.', import.meta.url))
const root = join(here, '..', '..')

const { values: args } = parseArgs({
  options: {
    devices: { type: 'string', default: '1000' },
    workers: { type: 'string', default: '2' },
    window: { type: 'string', default: '4' },
    'deep-window': { type: 'string', default: '64' },
    warmup: { type: 'string', default: '5' },
    seconds: { type: 'string', default: '10' },
    'payload-bytes': { type: 'string', default: '160' },
    out: { type: 'string', default: 'results/bench-ingest.json' },
    'database-url': { type: 'string' }
  }
})
const num = (name: keyof typeof args) => {
  const v = Number(args[name])
  if (!Number.isFinite(v) || v <= 0) { console.error(`--${name} must be a positive number`); process.exit(2) }
  return v
}
const DEVICES = num('devices'); const WORKERS = num('workers'); const WINDOW = num('window'); const DEEP = num('deep-window')
const WARMUP_S = num('warmup'); const SECONDS = num('seconds'); const PAYLOAD = num('payload-bytes')

const log = pino({ level: 'warn' })

interface ScenarioResult {
  name: string
  devices: number
  connected: number
  connectSeconds: number
  ackedPerSecond: number
  storedPerSecond?: number
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  maxMs: number
  brokerRssMaxMb: number
  brokerCpuPercent: number
  loadCpuPercent: number
  dbCpuPercent: number
  errors: number
  queueRowsMax?: number
  /** From the broker's own metrics over the window: mean rows per batch and mean commit time. */
  meanBatchRows?: number
  meanFlushMs?: number
}

async function histogramTotals (metricsUrl: string | undefined): Promise<Record<string, number>> {
  if (!metricsUrl) return {}
  const text = await fetch(metricsUrl).then((r) => r.text(), () => '')
  const out: Record<string, number> = {}
  for (const m of text.matchAll(/^(fleetgate_ingest_(?:batch_rows|flush_seconds)_(?:sum|count)) ([\d.e+-]+)$/gm)) out[m[1]!] = Number(m[2])
  return out
}

async function runScenario (opts: {
  name: string,
  url: string,
  brokerPid: number,
  anonymous: boolean,
  devices: WorkerDevice[],
  window: number,
  ratePerSecond: number,
  seconds: number,
  countRows?: () => Promise<number>,
  metricsUrl?: string
}): Promise<ScenarioResult> {
  const workers: ChildProcess[] = []
  const slices = Array.from({ length: WORKERS }, (_, w) => opts.devices.filter((_, i) => i % WORKERS === w))
  const connected = await Promise.all(slices.map((devs) => new Promise<Extract<WorkerMessage, { type: 'connected' }>>((resolve, reject) => {
    const child = fork(join(here, 'load-worker.js'), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
    workers.push(child)
    child.once('exit', (code) => { if (code) reject(new Error(`load worker exited with ${code}`)) })
    child.on('message', (m: WorkerMessage) => { if (m.type === 'connected') resolve(m) })
    const config: WorkerConfig = {
      url: opts.url,
      devices: devs,
      connectPerSecond: 2000 / WORKERS,
      window: opts.window,
      ratePerSecond: opts.ratePerSecond / WORKERS,
      qos: 1,
      anonymous: opts.anonymous,
      payloadBytes: PAYLOAD
    }
    child.send(config)
  })))
  await sleep(WARMUP_S * 1000)
  for (const w of workers) w.send({ type: 'measure' })
  const rows0 = opts.countRows ? await opts.countRows() : 0
  const cpu0 = await cpuSeconds(opts.brokerPid)
  const loadCpu0 = (await Promise.all(workers.map((w) => cpuSeconds(w.pid!)))).reduce((a, b) => a + b, 0)
  const db0 = await postgresCpuSeconds()
  const h0 = await histogramTotals(opts.metricsUrl)
  const t0 = Date.now()
  let rssMax = 0
  let queueMax = 0
  const sampler = setInterval(() => {
    void rssMb(opts.brokerPid).then((r) => { rssMax = Math.max(rssMax, r) })
    if (opts.metricsUrl) {
      void fetch(opts.metricsUrl).then((r) => r.text()).then((t) => {
        const m = /^fleetgate_ingest_queue_rows (\d+)/m.exec(t)
        if (m) queueMax = Math.max(queueMax, Number(m[1]))
      }).catch(() => {})
    }
  }, 250)
  await sleep(opts.seconds * 1000)
  const reports = await Promise.all(workers.map((w) => new Promise<Extract<WorkerMessage, { type: 'report' }>>((resolve) => {
    w.on('message', (m: WorkerMessage) => { if (m.type === 'report') resolve(m) })
    w.send({ type: 'report' })
  })))
  const elapsed = (Date.now() - t0) / 1000
  const rows1 = opts.countRows ? await opts.countRows() : 0
  const cpu1 = await cpuSeconds(opts.brokerPid)
  const loadCpu1 = (await Promise.all(workers.map((w) => cpuSeconds(w.pid!)))).reduce((a, b) => a + b, 0)
  const db1 = await postgresCpuSeconds()
  const h1 = await histogramTotals(opts.metricsUrl)
  const delta = (k: string) => (h1[k] ?? 0) - (h0[k] ?? 0)
  const batches = delta('fleetgate_ingest_batch_rows_count')
  clearInterval(sampler)
  for (const w of workers) w.send({ type: 'stop' })
  await Promise.all(workers.map((w) => new Promise((resolve) => w.once('exit', resolve))))

  const merged = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 120_000_000, numberOfSignificantValueDigits: 3 })
  for (const r of reports) merged.add(hdr.decodeFromCompressedBase64(r.histogram))
  const acked = reports.reduce((a, r) => a + r.acked, 0)
  const ms = (p: number) => Math.round(merged.getValueAtPercentile(p) / 10) / 100
  return {
    name: opts.name,
    devices: opts.devices.length,
    connected: connected.reduce((a, c) => a + c.connected, 0),
    connectSeconds: Math.max(...connected.map((c) => c.ms)) / 1000,
    ackedPerSecond: Math.round(acked / elapsed),
    storedPerSecond: opts.countRows ? Math.round((rows1 - rows0) / elapsed) : undefined,
    p50Ms: ms(50),
    p90Ms: ms(90),
    p99Ms: ms(99),
    maxMs: Math.round(merged.maxValue / 1000),
    brokerRssMaxMb: Math.round(rssMax),
    brokerCpuPercent: Math.round((cpu1 - cpu0) / elapsed * 100),
    loadCpuPercent: Math.round((loadCpu1 - loadCpu0) / elapsed * 100),
    dbCpuPercent: Math.round(cpuDelta(db0, db1) / elapsed * 100),
    errors: reports.reduce((a, r) => a + r.errors, 0),
    queueRowsMax: opts.metricsUrl ? queueMax : undefined,
    meanBatchRows: batches > 0 ? Math.round(delta('fleetgate_ingest_batch_rows_sum') / batches) : undefined,
    meanFlushMs: batches > 0 ? Math.round(delta('fleetgate_ingest_flush_seconds_sum') / batches * 1000 * 10) / 10 : undefined
  }
}

async function main () {
  const dir = await mkdtemp(join(tmpdir(), 'fleetgate-bench-'))
  const embedded = args['database-url'] ? undefined : await startEmbeddedPostgres({ dataDir: dir, log })
  const adminUrl = args['database-url'] ?? embedded!.url
  const admin = new pg.Client({ connectionString: adminUrl })
  await admin.connect()
  await admin.query('DROP DATABASE IF EXISTS fleetgate_bench')
  await admin.query('CREATE DATABASE fleetgate_bench')
  await admin.end()
  const u = new URL(adminUrl); u.pathname = '/fleetgate_bench'
  const dbUrl = u.toString()
  const children: ChildProcess[] = []
  const cleanup = async () => {
    await Promise.all(children.filter((c) => c.exitCode === null && c.signalCode === null).map((c) => {
      c.kill('SIGTERM')
      return new Promise((resolve) => c.once('exit', resolve))
    }))
    await embedded?.stop()
    await rm(dir, { recursive: true, force: true })
  }
  process.on('SIGINT', () => { void cleanup().then(() => process.exit(130)) })

  try {
    const results: ScenarioResult[] = []

    // 1. Baselines: plain aedes, at a shallow and a deep per-device window.
    const aedesPort = await freePort()
    const plain = fork(join(here, 'plain-aedes-broker.js'), [String(aedesPort)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
    children.push(plain)
    await new Promise((resolve) => plain.on('message', resolve))
    const anonDevices = Array.from({ length: DEVICES }, (_, i) => ({ id: `bench-${i + 1}` }))
    const plainCommon = { url: `mqtt://127.0.0.1:${aedesPort}`, brokerPid: plain.pid!, anonymous: true, devices: anonDevices, ratePerSecond: 0, seconds: SECONDS }
    console.error('baseline: plain aedes …')
    results.push(await runScenario({ ...plainCommon, name: `plain aedes, window ${WINDOW}`, window: WINDOW }))
    results.push(await runScenario({ ...plainCommon, name: `plain aedes, window ${DEEP}`, window: DEEP }))
    plain.kill('SIGTERM')

    // Eclipse Mosquitto, if installed (Debian package `mosquitto`): the same load in plain-MQTT mode.
    const mqPort = await freePort()
    const mosquitto = await startMosquitto(mqPort)
    if (mosquitto) {
      children.push(mosquitto)
      console.error('baseline: mosquitto …')
      const mqCommon = { ...plainCommon, url: `mqtt://127.0.0.1:${mqPort}`, brokerPid: mosquitto.pid! }
      results.push(await runScenario({ ...mqCommon, name: `mosquitto, window ${WINDOW}`, window: WINDOW }))
      results.push(await runScenario({ ...mqCommon, name: `mosquitto, window ${DEEP}`, window: DEEP }))
      mosquitto.kill('SIGTERM')
    } else console.error('mosquitto not installed (apt-get install mosquitto): baseline skipped')

    // 2. fleetgate.
    const mqttPort = await freePort(); const httpPort = await freePort()
    // BENCH_BROKER_NODE_ARGS, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof", profiles the broker alone.
    const nodeArgs = (process.env.BENCH_BROKER_NODE_ARGS ?? '').split(' ').filter(Boolean)
    const broker = spawn(process.execPath, [...nodeArgs, join(root, 'dist', 'broker', 'main.js')], {
      env: { ...process.env, DATABASE_URL: dbUrl, MQTT_PORT: String(mqttPort), HTTP_PORT: String(httpPort), MQTT_HOST: '127.0.0.1', HTTP_HOST: '127.0.0.1', LOG_LEVEL: 'warn' },
      stdio: ['ignore', 'inherit', 'inherit']
    })
    children.push(broker)
    await waitHttp(`http://127.0.0.1:${httpPort}/readyz`)
    console.error(`provisioning ${DEVICES} devices through the device CLI …`)
    const cli = spawn(process.execPath, [join(root, 'dist', 'broker', 'cli', 'create-device-cli.js'), '--count', String(DEVICES), '--prefix', 'bench'], {
      env: { ...process.env, DATABASE_URL: dbUrl, LOG_LEVEL: 'warn' }, stdio: ['ignore', 'pipe', 'inherit']
    })
    let out = ''
    cli.stdout!.on('data', (d) => { out += d })
    await new Promise((resolve) => cli.on('exit', resolve))
    const devices = out.trim().split('\n').map((l) => JSON.parse(l) as WorkerDevice)
    if (devices.length !== DEVICES) throw new Error(`provisioned ${devices.length} of ${DEVICES}`)

    const counter = new pg.Client({ connectionString: dbUrl })
    await counter.connect()
    const countRows = async () => Number((await counter.query<{ n: string }>('SELECT count(*) AS n FROM telemetry')).rows[0]!.n)
    const common = { url: `mqtt://127.0.0.1:${mqttPort}`, brokerPid: broker.pid!, anonymous: false, devices, countRows, metricsUrl: `http://127.0.0.1:${httpPort}/metrics`, seconds: SECONDS }

    console.error('fleetgate: saturate …')
    results.push(await runScenario({ ...common, name: `fleetgate, window ${WINDOW}`, window: WINDOW, ratePerSecond: 0 }))
    results.push(await runScenario({ ...common, name: `fleetgate, window ${DEEP}`, window: DEEP, ratePerSecond: 0 }))
    const bestStored = Math.max(...results.map((r) => r.storedPerSecond ?? 0))
    console.error('fleetgate: half load …')
    const half = await runScenario({ ...common, name: `fleetgate at half load (${Math.round(bestStored / 2)}/s)`, window: DEEP, ratePerSecond: Math.round(bestStored / 2) })
    results.push(half)
    // Half of the 15,000/s target, for the latency goal read that way.
    const halfTarget = await runScenario({ ...common, name: 'fleetgate at 7500/s', window: DEEP, ratePerSecond: 7500 })
    results.push(halfTarget)
    console.error('fleetgate: overload …')
    const over = await runScenario({ ...common, name: `fleetgate overload, window ${DEEP * 4}`, window: DEEP * 4, ratePerSecond: 0 })
    results.push(over)
    const alive = broker.exitCode === null
    await counter.end()

    const bestPlain = Math.max(...results.filter((r) => r.name.startsWith('plain aedes')).map((r) => r.ackedPerSecond))
    const bestMosquitto = Math.max(0, ...results.filter((r) => r.name.startsWith('mosquitto')).map((r) => r.ackedPerSecond))
    const ratio = Math.round(bestStored / bestPlain * 100) / 100
    const checks = [
      { goal: 'stored readings/s ≥ 15,000 (1,000 devices, QoS 1)', value: bestStored, ok: bestStored >= 15_000 },
      { goal: 'best stored / best plain aedes ≥ 0.75', value: ratio, ok: ratio >= 0.75 },
      ...(bestMosquitto > 0 ? [{ goal: 'best stored / best mosquitto (information)', value: Math.round(bestStored / bestMosquitto * 100) / 100, ok: true }] : []),
      { goal: 'PUBACK p99 < 100 ms at half the best stored rate', value: half.p99Ms, ok: half.p99Ms < 100 },
      { goal: 'PUBACK p99 < 100 ms at 7,500/s (half of 15,000)', value: halfTarget.p99Ms, ok: halfTarget.p99Ms < 100 },
      { goal: 'overload: broker alive, queue within capacity', value: `alive=${alive}, queue max ${over.queueRowsMax}, RSS max ${over.brokerRssMaxMb} MB`, ok: alive }
    ]
    const machine = { cpus: cpus().length, cpuModel: cpus()[0]?.model, node: process.version }
    console.log('\nscenario                                   devices  acked/s  stored/s  p50 ms  p90 ms  p99 ms  max ms  RSS MB  broker CPU  load CPU  db CPU  errors  batch rows  flush ms')
    for (const r of results) {
      console.log(`${r.name.padEnd(42)} ${String(r.connected).padStart(7)} ${String(r.ackedPerSecond).padStart(8)} ${String(r.storedPerSecond ?? '-').padStart(9)} ${String(r.p50Ms).padStart(7)} ${String(r.p90Ms).padStart(7)} ${String(r.p99Ms).padStart(7)} ${String(r.maxMs).padStart(7)} ${String(r.brokerRssMaxMb).padStart(7)} ${String(r.brokerCpuPercent + '%').padStart(11)} ${String(r.loadCpuPercent + '%').padStart(9)} ${String(r.dbCpuPercent + '%').padStart(7)} ${String(r.errors).padStart(7)} ${String(r.meanBatchRows ?? '-').padStart(11)} ${String(r.meanFlushMs ?? '-').padStart(9)}`)
    }
    console.log('\ngoal                                                   value   met')
    for (const c of checks) console.log(`${c.goal.padEnd(52)} ${String(c.value).padStart(8)}   ${c.ok ? 'yes' : 'NO'}`)
    await mkdir(join(root, 'results'), { recursive: true }).catch(() => {})
    const outPath = resolve(args.out!)
    await mkdir(join(outPath, '..'), { recursive: true })
    await writeFile(outPath, JSON.stringify({ date: new Date().toISOString(), machine, params: { DEVICES, WORKERS, WINDOW, DEEP, WARMUP_S, SECONDS, PAYLOAD }, results, checks }, null, 2))
    console.log(`\nwritten ${args.out}`)
  } finally {
    await cleanup()
  }
}

await main()

// `npm run bench:pipeline` — the durable-pipeline comparison of issue 15.
// What a user would otherwise build: Eclipse Mosquitto (acknowledges a
// device's QoS 1 PUBLISH on receipt) plus two subscriber services
// (copy-subscriber.ts, each its own Node.js process) sharing one MQTT 5
// subscription ($share/pipeline/devices/+/telemetry) and writing batches into
// the same telemetry table with COPY. Against fleetgate (PUBACK after
// commit), with the same load generator (bench-load.ts: --devices QoS 1
// devices, --window messages in flight each, as fast as PUBACKs come), the
// same database and the same measurement window, in the order fleetgate,
// pipeline, pipeline, fleetgate when --rounds 2 (drift cancels out).
// For each run:
//   - stored/s: rows that appeared in the table over the window;
//   - CPU per stored row: broker (+ subscribers) + database (the benchmark's
//     own PostgreSQL only), from /proc, over the window;
//   - acknowledged but not stored: devices' PUBACKs so far minus rows
//     committed so far (the subscribers report every 50 ms), sampled each
//     time a load process reports its count (once a second each; seen within
//     50 ms), max over the run. The other load process's count can be up to
//     a second old, so the figure errs low; fleetgate acknowledges after
//     commit: 0 by design;
//   - lost: after the run and the subscribers' last flush, readings
//     acknowledged minus rows stored (a broker queue overflowing drops them).
// Writes results/bench-pipeline.json.
import { fork, type ChildProcess } from 'node:child_process'
import { mkdir, writeFile } from 'node:fs/promises'
import { dirname, join, resolve } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import pg from 'pg'
import { cpuMicrosPerRow, describe, runLoad, type LoadResult } from './bench-load.js'
import { startBenchEnvironment } from './broker-under-test.js'
import type { SubscriberCounters } from './copy-subscriber.js'
import { postmasterPid } from './process-stats.js'
import { provisionDevices } from './provisioning.js'
import { tableRows } from './committed-rows.js'

const { values: args } = parseArgs({
  options: {
    devices: { type: 'string', default: '1000' },
    window: { type: 'string', default: '16' },
    warmup: { type: 'string', default: '5' },
    seconds: { type: 'string', default: '10' },
    rounds: { type: 'string', default: '1' },
    subscribers: { type: 'string', default: '2' },
    'batch-rows': { type: 'string', default: '2000' },
    'flush-ms': { type: 'string', default: '100' },
    'payload-bytes': { type: 'string', default: '160' },
    workers: { type: 'string', default: '2' },
    out: { type: 'string', default: 'results/bench-pipeline.json' },
    'database-url': { type: 'string' }
  }
})
const num = (name: keyof typeof args) => {
  const v = Number(args[name])
  if (!Number.isFinite(v) || v <= 0) { console.error(`--${name} must be a positive number`); process.exit(2) }
  return v
}
const DEVICES = num('devices'); const WINDOW = num('window'); const WARMUP = num('warmup'); const SECONDS = num('seconds')
const ROUNDS = num('rounds'); const SUBSCRIBERS = num('subscribers'); const WORKERS = num('workers'); const PAYLOAD = num('payload-bytes')
const here = fileURLToPath(new URL('.', import.meta.url))
const subscriberScript = join(here, 'copy-subscriber' + (import.meta.url.endsWith('.ts') ? '.ts' : '.js'))

export interface PipelineRun {
  system: 'fleetgate' | 'pipeline'
  result: LoadResult
  /** CPU µs per stored row: every process of the system (broker, subscribers, database), and the broker alone. */
  cpuMicrosPerRow?: number
  brokerCpuMicrosPerRow?: number
  /** Max over the run of readings acknowledged and not yet committed (a lower bound, see above); 0 for fleetgate by design. */
  ackedNotStoredMax: number
  /** Readings acknowledged and never stored (after the last flush). */
  lost: number
  /** Pipeline: rows each subscriber committed (the shared subscription's split). */
  subscriberRows?: number[]
}

interface Subscriber { proc: ChildProcess, counters: SubscriberCounters | undefined }

function startSubscriber (i: number, mqttUrl: string, databaseUrl: string): Promise<Subscriber> {
  const proc = fork(subscriberScript, ['--broker', mqttUrl, '--database-url', databaseUrl, '--share', 'pipeline', '--client-id', `copy-subscriber-${i}`,
    '--batch-rows', String(num('batch-rows')), '--flush-ms', String(num('flush-ms'))], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  const sub: Subscriber = { proc, counters: undefined }
  proc.on('message', (m: { type: string, counters?: SubscriberCounters }) => { if (m.counters) sub.counters = m.counters })
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => { proc.kill(); reject(new Error('copy-subscriber did not subscribe within 15 s')) }, 15_000)
    proc.on('message', (m: { type: string }) => { if (m.type === 'subscribed') { clearTimeout(t); resolve(sub) } })
    proc.once('exit', (code) => { clearTimeout(t); reject(new Error(`copy-subscriber exited with ${code}`)) })
  })
}

/** Asks a subscriber to flush and exit; resolves with its last counters. */
async function stopSubscriber (s: Subscriber): Promise<SubscriberCounters | undefined> {
  if (s.proc.exitCode !== null || s.proc.signalCode !== null) return s.counters
  const exited = new Promise<void>((resolve) => s.proc.once('exit', () => resolve()))
  s.proc.send({ type: 'stop' })
  const late = setTimeout(() => s.proc.kill('SIGKILL'), 30_000)
  await exited
  clearTimeout(late)
  return s.counters
}

async function main () {
  const env = await startBenchEnvironment({ name: 'pipeline', databaseUrl: args['database-url'] })
  const subscribers: Subscriber[] = []
  try {
    const postmaster = await postmasterPid(env.databaseUrl)
    if (!postmaster) console.error('the database does not run on this machine: its CPU is not counted')
    // fleetgate first: it migrates the database, so the table the subscribers write into is the real one.
    const fg = await env.fleetgate()
    console.error(`provisioning ${DEVICES} devices …`)
    const devices = await provisionDevices(fg.api, { count: DEVICES, idPrefix: 'bench' })
    const anonymous = devices.map((d) => ({ id: d.id }))
    const counter = new pg.Client({ connectionString: env.databaseUrl })
    await counter.connect()
    const countRows = tableRows(counter)
    const load = { devices, window: WINDOW, ratePerSecond: 0, readingsPerMessage: 1, payloadBytes: PAYLOAD, warmupSeconds: WARMUP, seconds: SECONDS, workers: WORKERS, postmaster, countRows }
    const runs: PipelineRun[] = []

    const runFleetgate = async (n: number) => {
      console.error(`fleetgate (${n}) …`)
      const before = await countRows()
      const result = await runLoad({ ...load, name: `fleetgate, window ${WINDOW} (${n})`, mqttUrl: fg.mqttUrl, processes: { broker: [fg.pid] }, rssPid: fg.pid })
      const lost = result.ackedReadingsTotal - (await countRows() - before)
      runs.push({ system: 'fleetgate', result, cpuMicrosPerRow: cpuMicrosPerRow(result, ['broker', 'database']), brokerCpuMicrosPerRow: cpuMicrosPerRow(result, ['broker']), ackedNotStoredMax: 0, lost: Math.max(0, lost) })
      console.error(describe(result))
    }

    const runPipeline = async (n: number) => {
      console.error(`mosquitto + ${SUBSCRIBERS} COPY subscribers (${n}) …`)
      const mosquitto = await env.mosquitto()
      if (!mosquitto) { console.error('mosquitto not installed (apt-get install mosquitto): the pipeline is skipped'); return }
      try {
        const before = await countRows()
        subscribers.length = 0
        for (let i = 0; i < SUBSCRIBERS; i++) subscribers.push(await startSubscriber(i + 1, mosquitto.mqttUrl, env.databaseUrl))
        let atRisk = 0
        const committed = () => subscribers.reduce((a, s) => a + (s.counters?.committed ?? 0), 0)
        const result = await runLoad({
          ...load,
          devices: anonymous,
          name: `mosquitto + ${SUBSCRIBERS} COPY subscribers, window ${WINDOW} (${n})`,
          mqttUrl: mosquitto.mqttUrl,
          processes: { broker: [mosquitto.pid], subscribers: subscribers.map((s) => s.proc.pid!) },
          rssPid: mosquitto.pid,
          sample: (acked) => { atRisk = Math.max(atRisk, acked - committed()) }
        })
        // What Mosquitto still queues for the subscribers is theirs to store: wait for it (until no progress for 3 s).
        for (let last = -1, since = Date.now(); committed() < result.ackedReadingsTotal && Date.now() - since < 3000; await sleep(200)) {
          if (committed() !== last) { last = committed(); since = Date.now() }
        }
        const finals = await Promise.all(subscribers.map(stopSubscriber))
        const stored = await countRows() - before
        const rejected = finals.reduce((a, c) => a + (c?.rejected ?? 0) + (c?.invalid ?? 0), 0)
        if (rejected > 0) console.error(`the subscribers refused ${rejected} rows or messages`)
        runs.push({ system: 'pipeline', result, cpuMicrosPerRow: cpuMicrosPerRow(result, ['broker', 'subscribers', 'database']), brokerCpuMicrosPerRow: cpuMicrosPerRow(result, ['broker']), ackedNotStoredMax: atRisk, lost: Math.max(0, result.ackedReadingsTotal - stored), subscriberRows: finals.map((c) => c?.committed ?? 0) })
        console.error(`${describe(result)}; acknowledged but not stored: max ${atRisk}; lost ${Math.max(0, result.ackedReadingsTotal - stored)}; rows per subscriber ${finals.map((c) => c?.committed ?? 0).join(' / ')}`)
      } finally {
        await Promise.all(subscribers.map(stopSubscriber))
        await mosquitto.stop()
      }
    }

    for (let round = 1; round <= ROUNDS; round++) {
      if (round % 2 === 1) { await runFleetgate(round); await runPipeline(round) } else { await runPipeline(round); await runFleetgate(round) }
    }
    await counter.end()

    const mean = (system: string, f: (r: PipelineRun) => number | undefined) => {
      const v = runs.filter((r) => r.system === system).map(f).filter((x): x is number => x !== undefined)
      return v.length > 0 ? Math.round(v.reduce((a, b) => a + b, 0) / v.length * 10) / 10 : undefined
    }
    const fgStored = mean('fleetgate', (r) => r.result.storedPerSecond); const plStored = mean('pipeline', (r) => r.result.storedPerSecond)
    const fgCpu = mean('fleetgate', (r) => r.cpuMicrosPerRow); const plCpu = mean('pipeline', (r) => r.cpuMicrosPerRow)
    const summary = {
      storedRatio: fgStored && plStored ? Math.round(fgStored / plStored * 100) / 100 : undefined,
      cpuPerRowRatio: fgCpu && plCpu ? Math.round(fgCpu / plCpu * 100) / 100 : undefined,
      pipelineAckedNotStoredMax: Math.max(0, ...runs.filter((r) => r.system === 'pipeline').map((r) => r.ackedNotStoredMax))
    }
    console.log('\nsystem                                              stored/s  CPU µs/row (all)  broker µs/row  acked-not-stored max  lost  PUBACK p50  p99 ms')
    for (const r of runs) {
      console.log(`${r.result.name.padEnd(50)} ${String(r.result.storedPerSecond ?? '—').padStart(9)} ${String(r.cpuMicrosPerRow ?? '—').padStart(17)} ${String(r.brokerCpuMicrosPerRow ?? '—').padStart(14)} ${String(r.ackedNotStoredMax).padStart(21)} ${String(r.lost).padStart(5)} ${String(r.result.p50Ms).padStart(11)} ${String(r.result.p99Ms).padStart(7)}`)
    }
    console.log(`\nfleetgate / pipeline: stored/s ${summary.storedRatio ?? '—'}, CPU per stored row ${summary.cpuPerRowRatio ?? '—'}; pipeline acknowledged-but-not-stored max ${summary.pipelineAckedNotStoredMax}`)
    const out = resolve(args.out!)
    await mkdir(dirname(out), { recursive: true })
    await writeFile(out, JSON.stringify({ date: new Date().toISOString(), params: { DEVICES, WINDOW, WARMUP, SECONDS, ROUNDS, SUBSCRIBERS, PAYLOAD, batchRows: num('batch-rows'), flushMs: num('flush-ms') }, runs, summary }, null, 2))
    console.log(`written ${args.out}`)
  } finally {
    for (const s of subscribers) s.proc.kill('SIGKILL')
    await env.close()
  }
}

await main()

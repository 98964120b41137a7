// `npm run bench:latency` — PUBACK latency at partial load (issue 15, target
// 3). fleetgate, --devices QoS 1 devices (bench-load.ts):
//   1. saturation: each of --saturation-windows messages in flight per
//      device, as fast as PUBACKs come; the best stored rate is the measured
//      maximum of this run;
//   2. open loop at half and at a quarter of that maximum: sends scheduled at
//      the offered rate whatever the acknowledgements (fleet-runner's `rate`
//      load), with a window of --open-window messages per device that only
//      caps a device whose PUBACKs stall (a run whose sent rate falls short of
//      the offered rate is flagged: the window or the load generator limited
//      it);
//   3. open loop at each --fixed rate (information; issue 15 quotes 10,000/s).
// PUBACK p50/p90/p99/p99.9/max of each; targets p99 < 100 ms at half and
// < 50 ms at a quarter. Writes results/bench-latency.json (with each run's
// PUBACK histogram, for the suite's latency charts).
import { mkdir, writeFile } from 'node:fs/promises'
import { dirname, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import pg from 'pg'
import { cpuMicrosPerRow, describe, runLoad, type LoadResult } from './bench-load.js'
import { startBenchEnvironment } from './broker-under-test.js'
import { postmasterPid } from './process-stats.js'
import { provisionDevices } from './provisioning.js'
import { committedLine, committedRows, tableRows, verifyCommitted } from './committed-rows.js'

const { values: args } = parseArgs({
  options: {
    devices: { type: 'string', default: '1000' },
    'saturation-windows': { type: 'string', default: '16,64' },
    'open-window': { type: 'string', default: '1000' },
    fixed: { type: 'string', default: '10000' },
    warmup: { type: 'string', default: '5' },
    seconds: { type: 'string', default: '10' },
    'payload-bytes': { type: 'string', default: '160' },
    workers: { type: 'string', default: '2' },
    out: { type: 'string', default: 'results/bench-latency.json' },
    'database-url': { type: 'string' }
  }
})
const num = (name: keyof typeof args) => {
  const v = Number(args[name])
  if (!Number.isFinite(v) || v <= 0) { console.error(`--${name} must be a positive number`); process.exit(2) }
  return v
}
const list = (s: string | undefined) => String(s ?? '').split(',').filter(Boolean).map(Number).filter((n) => Number.isFinite(n) && n > 0)
const DEVICES = num('devices'); const OPEN_WINDOW = num('open-window'); const WARMUP = num('warmup'); const SECONDS = num('seconds')
const PAYLOAD = num('payload-bytes'); const WORKERS = num('workers')
const SAT_WINDOWS = list(args['saturation-windows']); const FIXED = list(args.fixed)
if (SAT_WINDOWS.length === 0) { console.error('--saturation-windows needs at least one window'); process.exit(2) }

export interface OpenLoopRun {
  /** Share of the measured maximum (0.5, 0.25), or undefined for a --fixed rate. */
  fraction?: number
  offeredPerSecond: number
  result: LoadResult
  /** The sent rate fell short of the offered rate by more than 5%: the window or the load generator limited it. */
  shortOfOffered: boolean
  /** p99 goal in ms, when the run has one. */
  p99GoalMs?: number
  brokerCpuMicrosPerReading?: number
}

async function main () {
  const env = await startBenchEnvironment({ name: 'latency', databaseUrl: args['database-url'] })
  try {
    const postmaster = await postmasterPid(env.databaseUrl)
    const fg = await env.fleetgate()
    console.error(`provisioning ${DEVICES} devices …`)
    const devices = await provisionDevices(fg.api, { count: DEVICES, idPrefix: 'lat' })
    const counter = new pg.Client({ connectionString: env.databaseUrl })
    await counter.connect()
    // Stored rows per window from the broker's counter, not a count(*) of
    // the table, which stalls everything on this machine once the table is
    // big (committed-rows.ts); checked against the table at the end.
    const countRows = committedRows(fg.metricsUrl)
    const verification = await verifyCommitted(tableRows(counter), countRows)
    const common = { mqttUrl: fg.mqttUrl, devices, readingsPerMessage: 1, payloadBytes: PAYLOAD, warmupSeconds: WARMUP, seconds: SECONDS, workers: WORKERS, processes: { broker: [fg.pid] }, rssPid: fg.pid, postmaster, countRows }

    const saturation: LoadResult[] = []
    for (const w of SAT_WINDOWS) {
      console.error(`fleetgate saturated, window ${w} …`)
      const r = await runLoad({ ...common, name: `fleetgate saturated, window ${w}`, window: w, ratePerSecond: 0 })
      console.error(describe(r))
      saturation.push(r)
    }
    const maxStored = Math.max(...saturation.map((r) => r.storedPerSecond ?? 0))

    const open: OpenLoopRun[] = []
    const openLoop = async (offered: number, name: string, fraction?: number, p99GoalMs?: number) => {
      console.error(`${name} …`)
      const result = await runLoad({ ...common, name, window: OPEN_WINDOW, ratePerSecond: offered })
      const shortOfOffered = result.sentPerSecond < offered * 0.95
      console.error(describe(result) + (shortOfOffered ? ` — sent ${result.sentPerSecond}/s, short of the offered ${offered}/s` : ''))
      open.push({ ...(fraction !== undefined ? { fraction } : {}), offeredPerSecond: offered, result, shortOfOffered, ...(p99GoalMs !== undefined ? { p99GoalMs } : {}), brokerCpuMicrosPerReading: cpuMicrosPerRow(result, ['broker']) })
    }
    await openLoop(Math.round(maxStored / 2), `fleetgate open loop at half the maximum (${Math.round(maxStored / 2)}/s)`, 0.5, 100)
    await openLoop(Math.round(maxStored / 4), `fleetgate open loop at a quarter (${Math.round(maxStored / 4)}/s)`, 0.25, 50)
    for (const rate of FIXED) await openLoop(rate, `fleetgate open loop at ${rate}/s`)
    const committed = await verification.check()
    await counter.end()
    console.error(`stored rows: ${committedLine(committed)}`)
    if (!committed.ok) process.exitCode = 1

    const checks = open.filter((r) => r.p99GoalMs !== undefined).map((r) => ({
      goal: `PUBACK p99 < ${r.p99GoalMs} ms at ${r.fraction === 0.5 ? 'half' : 'a quarter'} of the measured maximum (${r.offeredPerSecond}/s offered)`,
      value: r.result.p99Ms,
      ok: r.result.ackedPerSecond > 0 && r.result.p99Ms < r.p99GoalMs! && !r.shortOfOffered
    }))
    console.log(`\nmeasured maximum: ${maxStored} stored/s (best of windows ${SAT_WINDOWS.join(', ')})`)
    console.log('run                                                  offered/s  sent/s  stored/s  p50 ms  p90 ms  p99 ms  p99.9 ms  max ms')
    for (const r of [...saturation.map((result) => ({ result, offeredPerSecond: 0 })), ...open]) {
      const x = r.result
      console.log(`${x.name.padEnd(52)} ${String(r.offeredPerSecond || '—').padStart(9)} ${String(x.sentPerSecond).padStart(7)} ${String(x.storedPerSecond ?? '—').padStart(9)} ${String(x.p50Ms).padStart(7)} ${String(x.p90Ms).padStart(7)} ${String(x.p99Ms).padStart(7)} ${String(x.p999Ms).padStart(9)} ${String(x.maxMs).padStart(7)}`)
    }
    for (const c of checks) console.log(`${c.ok ? 'met' : 'NOT met'}: ${c.goal}: ${c.value} ms`)
    const out = resolve(args.out!)
    await mkdir(dirname(out), { recursive: true })
    await writeFile(out, JSON.stringify({ date: new Date().toISOString(), params: { DEVICES, SAT_WINDOWS, OPEN_WINDOW, FIXED, WARMUP, SECONDS, PAYLOAD }, maxStoredPerSecond: maxStored, storedCheck: committed, saturation, open, checks }, null, 2))
    console.log(`written ${args.out}`)
  } finally {
    await env.close()
  }
}

await main()

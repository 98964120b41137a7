// `npm run bench:gateway` — gateways (issue 15, target 2): each message
// carries many readings (a JSON array), as a gateway forwarding its sensors
// sends them. fleetgate, QoS 1, PUBACK after commit, --devices devices with
// --window messages in flight each (bench-load.ts), at 10 readings per
// message and at 100 (--window-100 in flight); readings stored per second
// end to end (rows that appeared in the telemetry table over the window).
// Baseline, in the same run, on the same database and table: the raw COPY
// rate of the same rows (the virtual devices' own reading text, the same
// device ids and timestamps' spread, the table's dedup digest), COPY
// telemetry FROM STDIN in --copy-batch-row batches over each of the
// --copy-connections connection counts (default 1 and 3; fleetgate writes
// with 3 writers by default), the best of them as the baseline (the COPY path
// of bench-insert-paths.ts, lines made by copy-subscriber.ts, prepared before
// the clock starts). The table is emptied before each measurement.
// Targets: ≥ 100,000 readings/s at 10 per message, and ≥ 0.5 × raw COPY.
// Writes results/bench-gateway.json.
import { mkdir, writeFile } from 'node:fs/promises'
import { dirname, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import pg from 'pg'
import { cpuMicrosPerRow, describe, runLoad, type LoadResult } from './bench-load.js'
import { startBenchEnvironment } from './broker-under-test.js'
import { copyLine, copyLines } from './copy-subscriber.js'
import { postmasterPid } from './process-stats.js'
import { provisionDevices } from './provisioning.js'
import { committedLine, committedRows, tableRows, verifyCommitted } from './committed-rows.js'

const { values: args } = parseArgs({
  options: {
    devices: { type: 'string', default: '1000' },
    readings: { type: 'string', default: '10,100' },
    window: { type: 'string', default: '4' },
    'window-100': { type: 'string', default: '1' },
    warmup: { type: 'string', default: '5' },
    seconds: { type: 'string', default: '10' },
    'payload-bytes': { type: 'string', default: '160' },
    'copy-batch': { type: 'string', default: '4000' },
    'copy-rows': { type: 'string', default: '200000' },
    'copy-connections': { type: 'string', default: '1,3' },
    workers: { type: 'string', default: '2' },
    out: { type: 'string', default: 'results/bench-gateway.json' },
    'database-url': { type: 'string' }
  }
})
const num = (name: keyof typeof args) => {
  const v = Number(args[name])
  if (!Number.isFinite(v) || v <= 0) { console.error(`--${name} must be a positive number`); process.exit(2) }
  return v
}
const DEVICES = num('devices'); const WINDOW = num('window'); const WINDOW_100 = num('window-100'); const WARMUP = num('warmup'); const SECONDS = num('seconds')
const PAYLOAD = num('payload-bytes'); const COPY_BATCH = num('copy-batch'); const COPY_ROWS = num('copy-rows'); const WORKERS = num('workers')
const COPY_CONNECTIONS = String(args['copy-connections']).split(',').map(Number).filter((n) => Number.isInteger(n) && n > 0)
if (COPY_CONNECTIONS.length === 0) { console.error('--copy-connections: a list of connection counts, e.g. 1,3'); process.exit(2) }
const READINGS = String(args.readings).split(',').map(Number).filter((n) => Number.isInteger(n) && n > 0)
/** Readings per message → messages in flight per device. */
const windowFor = (readings: number) => readings >= 100 ? WINDOW_100 : WINDOW

export interface GatewayRun {
  readingsPerMessage: number
  result: LoadResult
  /** Raw COPY of the same rows, measured right after: the best over the connection counts tried. */
  rawCopyRowsPerSecond: number
  /** Raw COPY rows/s by number of connections. */
  rawCopyByConnections: Record<string, number>
  /** Readings stored/s end to end / raw COPY rows/s. */
  ratio: number
  brokerCpuMicrosPerReading?: number
}

/**
 * The rows a virtual device of this profile sends (virtual-device.ts: its
 * default reading text, `pad` filling it to about --payload-bytes), as COPY
 * lines: `count` readings spread over the devices like a gateway run.
 */
function sameRows (count: number, readingsPerMessage: number, deviceIds: string[], from: number): string[] {
  const filler = 'x'.repeat(Math.max(0, PAYLOAD - 80))
  const now = Date.now()
  const lines: string[] = []
  for (let i = 0; i < count; i++) {
    const n = from + i
    const message = Math.floor(n / readingsPerMessage)
    const device = deviceIds[message % deviceIds.length]!
    const ts = now - (readingsPerMessage - 1 - (n % readingsPerMessage)) - Math.floor(message / deviceIds.length)
    const json = `{"ts":${ts},"seq":${n},"temp":${(15 + (n % 150) / 10).toFixed(2)},"hum":${(30 + (n % 400) / 10).toFixed(1)},"pad":"${filler}"}`
    lines.push(copyLine(device, json, ts, now))
  }
  return lines
}

/** COPY of `rows` prepared rows in batches over the connections; rows/s, lines prepared beforehand (not timed). */
async function rawCopyRate (databaseUrl: string, readingsPerMessage: number, deviceIds: string[], connections: number): Promise<number> {
  const clients = await Promise.all(Array.from({ length: connections }, async () => {
    const c = new pg.Client({ connectionString: databaseUrl })
    await c.connect()
    return c
  }))
  try {
    let seq = 0
    const batches = (rows: number) => Array.from({ length: Math.ceil(rows / COPY_BATCH) }, () => { const b = sameRows(COPY_BATCH, readingsPerMessage, deviceIds, seq); seq += COPY_BATCH; return b })
    const run = async (all: string[][]) => {
      let next = 0
      await Promise.all(clients.map(async (c) => { while (next < all.length) await copyLines(c, all[next++]!) }))
    }
    await run(batches(Math.min(COPY_ROWS, COPY_BATCH * 5))) // warm-up: caches, the partition's first pages
    await clients[0]!.query('TRUNCATE telemetry')
    const all = batches(COPY_ROWS)
    const t0 = performance.now()
    await run(all)
    return Math.round(all.length * COPY_BATCH / ((performance.now() - t0) / 1000))
  } finally {
    await Promise.all(clients.map((c) => c.end()))
  }
}

async function main () {
  const env = await startBenchEnvironment({ name: 'gateway', databaseUrl: args['database-url'] })
  try {
    const postmaster = await postmasterPid(env.databaseUrl)
    const fg = await env.fleetgate()
    console.error(`provisioning ${DEVICES} devices …`)
    const devices = await provisionDevices(fg.api, { count: DEVICES, idPrefix: 'gw' })
    const counter = new pg.Client({ connectionString: env.databaseUrl })
    await counter.connect()
    const countRows = tableRows(counter)
    const storedRows = committedRows(fg.metricsUrl)
    const runs: GatewayRun[] = []
    for (const readings of READINGS) {
      await counter.query('TRUNCATE telemetry')
      console.error(`fleetgate, ${readings} readings per message …`)
      // Stored rows per window from the broker's counter (committed-rows.ts),
      // checked against the table once the load has stopped.
      const verification = await verifyCommitted(countRows, storedRows)
      const result = await runLoad({
        name: `fleetgate, ${readings} readings/message, window ${windowFor(readings)}`,
        mqttUrl: fg.mqttUrl,
        devices,
        window: windowFor(readings),
        ratePerSecond: 0,
        readingsPerMessage: readings,
        payloadBytes: PAYLOAD,
        warmupSeconds: WARMUP,
        seconds: SECONDS,
        workers: WORKERS,
        processes: { broker: [fg.pid] },
        rssPid: fg.pid,
        postmaster,
        countRows: storedRows
      })
      console.error(describe(result))
      const committed = await verification.check()
      console.error(`stored rows: ${committedLine(committed)}`)
      if (!committed.ok) process.exitCode = 1
      const rawCopyByConnections: Record<string, number> = {}
      for (const n of COPY_CONNECTIONS) {
        await counter.query('TRUNCATE telemetry')
        rawCopyByConnections[n] = await rawCopyRate(env.databaseUrl, readings, devices.map((d) => d.id), n)
      }
      const raw = Math.max(...Object.values(rawCopyByConnections))
      const ratio = Math.round((result.storedPerSecond ?? 0) / raw * 100) / 100
      console.error(`raw COPY of the same rows: ${Object.entries(rawCopyByConnections).map(([n, v]) => `${v} rows/s over ${n} connection(s)`).join(', ')}; end to end / best raw: ${ratio}`)
      runs.push({ readingsPerMessage: readings, result, rawCopyRowsPerSecond: raw, rawCopyByConnections, ratio, brokerCpuMicrosPerReading: cpuMicrosPerRow(result, ['broker']) })
    }
    await counter.end()
    const ten = runs.find((r) => r.readingsPerMessage === 10)
    const checks = ten
      ? [
          { goal: 'readings stored/s ≥ 100,000 at 10 readings per message (PUBACK after commit)', value: ten.result.storedPerSecond ?? 0, ok: (ten.result.storedPerSecond ?? 0) >= 100_000 },
          { goal: 'end to end / raw COPY of the same rows ≥ 0.5 (10 readings per message)', value: ten.ratio, ok: ten.ratio >= 0.5 }
        ]
      : []
    console.log('\nreadings/msg  window  msgs acked/s  readings stored/s  raw COPY rows/s  ratio  PUBACK p50  p99 ms  broker CPU µs/reading')
    for (const r of runs) {
      console.log(`${String(r.readingsPerMessage).padStart(12)} ${String(r.result.window).padStart(7)} ${String(r.result.ackedPerSecond).padStart(13)} ${String(r.result.storedPerSecond ?? '—').padStart(18)} ${String(r.rawCopyRowsPerSecond).padStart(16)} ${String(r.ratio).padStart(6)} ${String(r.result.p50Ms).padStart(11)} ${String(r.result.p99Ms).padStart(7)} ${String(r.brokerCpuMicrosPerReading ?? '—').padStart(22)}`)
    }
    for (const c of checks) console.log(`${c.ok ? 'met' : 'NOT met'}: ${c.goal}: ${c.value}`)
    const out = resolve(args.out!)
    await mkdir(dirname(out), { recursive: true })
    await writeFile(out, JSON.stringify({ date: new Date().toISOString(), params: { DEVICES, WINDOW, WINDOW_100, WARMUP, SECONDS, PAYLOAD, COPY_BATCH, COPY_ROWS, COPY_CONNECTIONS }, runs, checks }, null, 2))
    console.log(`written ${args.out}`)
  } finally {
    await env.close()
  }
}

await main()

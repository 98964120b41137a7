// `npm run bench:config` — how long until every device runs a new config
// (issue 3). For N devices (default 1,000 and 10,000), all connected over real
// MQTT from child processes and applying config as the contract says:
//   1. parallel PUTs — one PUT /v1/devices/{id}/config per device, 64 at a time
//   2. one rollout   — POST /v1/rollouts for all of them, unbounded rate
// Reports the time from the start until each device's report was recorded
// (p50/p99/max) and, for the rollout, until GET /v1/rollouts/{id} counted
// every device in sync. Writes results/bench-config-push.json.
import { mkdir, writeFile } from 'node:fs/promises'
import { cpus } from 'node:os'
import { join, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { setTimeout as sleep } from 'node:timers/promises'
import { startBenchEnvironment } from './broker-under-test.js'
import { CONFIG_FOLLOWER } from './virtual-device.js'
import { forkFleets } from './fleet-process.js'
import { latencyHistogram, maxMs, percentileMs, recordMs } from './latency-histogram.js'
import { provisionDevices } from './provisioning.js'

const { values: args } = parseArgs({ options: { sizes: { type: 'string', default: '1000,10000' }, bulk: { type: 'string', default: '100000' }, workers: { type: 'string', default: '2' }, out: { type: 'string', default: 'results/bench-config-push.json' } } })
const SIZES = args.sizes!.split(',').map(Number)
const WORKERS = Number(args.workers)

/** p50/p99/max of the times (ms) of the devices that reported; NaN when none did. */
function latencies (times: Array<number | undefined>) {
  const h = latencyHistogram()
  for (const t of times) if (t !== undefined) recordMs(h, t)
  return { p50Ms: percentileMs(h, 50, 0, NaN), p99Ms: percentileMs(h, 99, 0, NaN), maxMs: maxMs(h, NaN), missing: times.filter((t) => t === undefined).length }
}

async function main () {
  const env = await startBenchEnvironment({ name: 'config' })
  const results: unknown[] = []
  let bulkResult: { devices: number, ms: number } | undefined
  try {
    const broker = await env.fleetgate()
    const { api } = broker
    // Provisioning a fleet: POST /v1/devices/bulk, read the whole NDJSON stream.
    const bulkN = Number(args.bulk)
    if (bulkN > 0) {
      const tb = Date.now()
      const created = await provisionDevices(api, { count: bulkN, idPrefix: 'bulk', labels: { bench: 'bulk' } })
      bulkResult = { devices: created.length, ms: Date.now() - tb }
      console.log(`bulk provisioning: ${created.length} devices with credentials in ${bulkResult.ms} ms`)
    }
    for (const n of SIZES) {
      const prefix = `cfg${n}`
      const devices = await provisionDevices(api, { count: n, idPrefix: prefix, labels: { bench: prefix } })
      const reports = new Map<string, number>() // `${id}:${version}` → time
      const fleets = forkFleets(Array.from({ length: WORKERS }, (_, w) => ({
        devices: devices.filter((_, i) => i % WORKERS === w).map((d) => ({ ...d, broker: broker.mqttUrl })),
        profile: CONFIG_FOLLOWER,
        load: { kind: 'idle' },
        rampPerSecond: 2000 / WORKERS,
        churnPerMinute: 0,
        seed: w + 1,
        recordAcks: false
      })), { configApplied: (id, version, at) => { reports.set(`${id}:${version}`, at) } })
      const ready = await fleets.settled()
      if (ready.gaveUp > 0) {
        await fleets.stop(0)
        throw new Error(`${ready.gaveUp} devices failed to connect: ${JSON.stringify(ready.failureReasons)}`)
      }
      console.error(`${n} devices connected`)

      // 1. parallel PUTs (version 1 for every device)
      const t0 = Date.now()
      let next = 0
      await Promise.all(Array.from({ length: 64 }, async () => {
        while (next < devices.length) {
          const d = devices[next++]!
          await api.json('PUT', `/v1/devices/${d.id}/config`, { config: { interval: 10 } })
        }
      }))
      const putsDone = Date.now() - t0
      const deadline = Date.now() + 120_000
      while (devices.some((d) => !reports.has(`${d.id}:1`)) && Date.now() < deadline) await sleep(20)
      const puts = latencies(devices.map((d) => { const at = reports.get(`${d.id}:1`); return at === undefined ? undefined : at - t0 }))

      // 2. one rollout (version 2 for every device)
      const t1 = Date.now()
      const ro = await api.json<{ id: string }>('POST', '/v1/rollouts', { selector: `bench=${prefix}`, config: { interval: 20 } })
      let apiComplete = NaN
      while (Date.now() < t1 + 120_000) {
        const r = await api.json<{ counts: { inSync: number } }>('GET', `/v1/rollouts/${ro.id}`)
        if (r.counts.inSync === n) { apiComplete = Date.now() - t1; break }
        await sleep(50)
      }
      // The devices' reports reach us in 50 ms batches: wait for the stragglers (bounded).
      for (const end = Date.now() + 10_000; devices.some((d) => !reports.has(`${d.id}:2`)) && Date.now() < end;) await sleep(20)
      const rollout = latencies(devices.map((d) => { const at = reports.get(`${d.id}:2`); return at === undefined ? undefined : at - t1 }))
      const row = {
        devices: n,
        parallelPuts: { putsMs: putsDone, ...puts },
        rollout: { p50Ms: rollout.p50Ms, p99Ms: rollout.p99Ms, maxMs: rollout.maxMs, allInSyncByApiMs: apiComplete, missing: rollout.missing }
      }
      results.push(row)
      console.log(JSON.stringify(row))
      await fleets.stop(0)
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
    await env.close()
  }
}
await main()

// One measured load for the issue-15 scenarios (bench-pipeline.ts,
// bench-gateway.ts, bench-latency.ts): the ingest benchmark's load
// (bench-ingest.ts: fleet processes of virtual devices, QoS 1, clean
// sessions, a warm-up, then a measurement window), with what those scenarios
// need besides: several readings per message, the CPU of every process the
// benchmark started for the system under test (broker, subscriber services,
// the benchmark's own PostgreSQL), a sampler called during the window, and
// the PUBACK histogram itself (encoded) for the latency charts.
import { setTimeout as sleep } from 'node:timers/promises'
import { forkFleets } from './fleet-process.js'
import type { FleetSpec } from './fleet-runner.js'
import { encodeHistogram, maxMs, percentileMs } from './latency-histogram.js'
import { cpuDelta, cpuSeconds, postgresCpuSeconds, rssMb } from './process-stats.js'
import { TELEMETRY_ONLY } from './virtual-device.js'

export interface LoadOptions {
  name: string
  mqttUrl: string
  devices: Array<{ id: string, secret?: string }>
  /** Messages unacknowledged per device: the whole load (closed loop), or the cap of an open-loop rate. */
  window: number
  /** Open loop: messages per second in total, sent on schedule whatever the acks (up to `window` per device); 0: closed loop. */
  ratePerSecond: number
  readingsPerMessage: number
  payloadBytes: number
  warmupSeconds: number
  seconds: number
  workers: number
  /** Processes of the system under test whose CPU is counted, by role (e.g. broker, subscribers). */
  processes: Record<string, number[]>
  /** The process whose RSS is sampled (the broker). */
  rssPid?: number
  /** The benchmark database's postmaster: only its processes count as database CPU. */
  postmaster?: number
  /** Rows in the telemetry table (stored readings). */
  countRows?: () => Promise<number>
  /** Called with the readings acknowledged so far each time a fleet process reports (its tick, once a second; seen within 50 ms), from the first connection to the end. */
  sample? (ackedSoFar: number): void | Promise<void>
}

export interface LoadResult {
  name: string
  devices: number
  connected: number
  readingsPerMessage: number
  /** Offered messages/s (open loop), 0 for a closed loop. */
  offeredPerSecond: number
  window: number
  seconds: number
  sentPerSecond: number
  ackedPerSecond: number
  /** Readings acknowledged per second (messages × readings per message). */
  ackedReadingsPerSecond: number
  /** Rows that appeared in the table per second over the window. */
  storedPerSecond?: number
  p50Ms: number
  p90Ms: number
  p99Ms: number
  p999Ms: number
  maxMs: number
  /** The PUBACK histogram of the window, hdr-histogram-js compressed base64. */
  puback: string
  rssMaxMb: number
  /** CPU seconds per second (1 = one core) by role, the database as `database`, the load as `load`. */
  cpu: Record<string, number>
  errors: number
  /** Readings acknowledged from the first connection to the end (warm-up included). */
  ackedReadingsTotal: number
}

export async function runLoad (o: LoadOptions): Promise<LoadResult> {
  const W = Math.max(1, Math.min(o.workers, o.devices.length))
  const specs: FleetSpec[] = Array.from({ length: W }, (_, w) => ({
    devices: o.devices.filter((_, i) => i % W === w).map((d) => ({ ...d, broker: o.mqttUrl })),
    profile: { ...TELEMETRY_ONLY, readings: o.readingsPerMessage, payloadBytes: o.payloadBytes },
    load: o.ratePerSecond > 0 ? { kind: 'rate', perSecond: o.ratePerSecond / W, window: o.window } : { kind: 'window', window: o.window },
    rampPerSecond: 2000 / W,
    churnPerMinute: 0,
    seed: w + 1,
    recordAcks: false
  }))
  const fleets = forkFleets(specs)
  let result: Omit<LoadResult, 'ackedReadingsTotal'>
  try {
    const ready = await fleets.settled()
    // The devices' counters are never reset (no measure()): the window is the
    // difference of two reports, and the sampler sees acknowledgements counted
    // from the start of the run.
    let rssMax = 0
    let sampling = false
    // A fleet process ticks once a second; polled every 50 ms, a new tick is
    // seen within 50 ms of its arrival, and the sample compares it with what
    // was true then (not up to a second later).
    let seen: unknown[] = []
    let polls = 0
    const sampler = setInterval(() => {
      if (o.rssPid && polls++ % 5 === 0) void rssMb(o.rssPid).then((r) => { rssMax = Math.max(rssMax, r) })
      const ticks = fleets.ticks()
      if (o.sample && !sampling && ticks.some((t, i) => t !== seen[i])) {
        seen = ticks
        sampling = true
        const acked = ticks.reduce((a, t) => a + t.acked, 0)
        void Promise.resolve(o.sample(acked * o.readingsPerMessage)).catch(() => {}).finally(() => { sampling = false })
      }
    }, 50)
    await sleep(o.warmupSeconds * 1000)
    const roles = Object.entries(o.processes)
    const cpuOf = async () => {
      const out: Record<string, number> = {}
      for (const [role, pids] of roles) out[role] = (await Promise.all(pids.map(cpuSeconds))).reduce((a, b) => a + b, 0)
      out.load = (await Promise.all(fleets.pids.map(cpuSeconds))).reduce((a, b) => a + b, 0)
      return out
    }
    // Each figure over its own interval: reading /proc takes a while on a busy machine.
    const tc0 = Date.now()
    const cpu0 = await cpuOf()
    const db0 = o.postmaster ? await postgresCpuSeconds(o.postmaster) : new Map<string, number>()
    // A count takes a while on a big table: each is timed at its middle.
    const countAt = async (): Promise<[number, number]> => {
      const before = Date.now()
      const n = o.countRows ? await o.countRows() : 0
      return [n, (before + Date.now()) / 2]
    }
    const [rows0, tr0] = await countAt()
    const r0 = await fleets.report()
    const t0 = Date.now()
    rssMax = 0
    await sleep(o.seconds * 1000)
    const r1 = await fleets.report()
    const elapsed = (Date.now() - t0) / 1000
    const [rows1, tr1] = await countAt()
    const rowsElapsed = (tr1 - tr0) / 1000
    const tc1 = Date.now()
    const cpu1 = await cpuOf()
    const db1 = o.postmaster ? await postgresCpuSeconds(o.postmaster) : new Map<string, number>()
    const cpuElapsed = (tc1 - tc0) / 1000
    clearInterval(sampler)
    const cpu: Record<string, number> = {}
    for (const k of Object.keys(cpu1)) cpu[k] = Math.round((cpu1[k]! - (cpu0[k] ?? 0)) / cpuElapsed * 1000) / 1000
    if (o.postmaster) cpu.database = Math.round(cpuDelta(db0, db1) / cpuElapsed * 1000) / 1000
    const h = r1.puback
    h.subtract(r0.puback)
    const errors = (r: typeof r0) => Object.values(r.errors).reduce((a, b) => a + b, 0)
    const acked = r1.acked - r0.acked
    result = {
      name: o.name,
      devices: o.devices.length,
      connected: ready.ready,
      readingsPerMessage: o.readingsPerMessage,
      offeredPerSecond: o.ratePerSecond,
      window: o.window,
      seconds: Math.round(elapsed * 10) / 10,
      sentPerSecond: Math.round((r1.sent - r0.sent) / elapsed),
      ackedPerSecond: Math.round(acked / elapsed),
      ackedReadingsPerSecond: Math.round(acked * o.readingsPerMessage / elapsed),
      storedPerSecond: o.countRows ? Math.round((rows1 - rows0) / rowsElapsed) : undefined,
      p50Ms: percentileMs(h, 50),
      p90Ms: percentileMs(h, 90),
      p99Ms: percentileMs(h, 99),
      p999Ms: percentileMs(h, 99.9),
      maxMs: maxMs(h),
      puback: encodeHistogram(h),
      rssMaxMb: Math.round(rssMax),
      cpu,
      errors: errors(r1) - errors(r0)
    }
  } catch (err) {
    await fleets.stop(0).catch(() => {})
    throw err
  }
  // No drain: what is in flight now is abandoned, and not counted as acknowledged.
  const final = await fleets.stop(0)
  return { ...result, ackedReadingsTotal: final.acked * o.readingsPerMessage }
}

/** CPU microseconds per stored row of the given roles (undefined when nothing was stored). */
export function cpuMicrosPerRow (r: LoadResult, roles: string[]): number | undefined {
  if (!r.storedPerSecond) return undefined
  const cpu = roles.reduce((a, k) => a + (r.cpu[k] ?? 0), 0)
  return Math.round(cpu * 1e6 / r.storedPerSecond * 10) / 10
}

/** A one-line summary for the console. */
export function describe (r: LoadResult): string {
  const cpu = Object.entries(r.cpu).map(([k, v]) => `${k} ${Math.round(v * 100)}%`).join(', ')
  return `${r.name}: sent ${r.sentPerSecond}/s, acked ${r.ackedPerSecond} msg/s (${r.ackedReadingsPerSecond} readings/s), stored ${r.storedPerSecond ?? '—'}/s, PUBACK p50 ${r.p50Ms} p90 ${r.p90Ms} p99 ${r.p99Ms} p99.9 ${r.p999Ms} max ${r.maxMs} ms, CPU ${cpu}, errors ${r.errors}`
}

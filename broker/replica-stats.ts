// The replica's side of GET /v1/overview (devices/replica-stats.ts): rates
// and PUBACK p99 over a sliding window of samples of the process's own
// Prometheus counters, so the console shows the same numbers /metrics does.
import type { ReplicaReadiness, ReplicaSnapshot, ReplicaStats } from '../devices/replica-stats.js'
import type { Metrics } from './metrics.js'

interface Sample { at: number, connects: number, stored: number, ackBuckets: Array<[number, number]> }

export interface ReplicaStatsOptions {
  metrics: Metrics
  queueRows (): number
  queueCapacity: number
  /** undefined when ready, else why not (the /readyz check). */
  notReady (): Promise<string | undefined>
  databaseOk (): Promise<boolean>
  /** undefined without Redis; else true while Redis answers. */
  redisOk (): boolean | undefined
  /** Window the rates cover (default 10 s). */
  windowMs?: number
}

export interface ReplicaStatsSampler extends ReplicaStats {
  /** Takes a sample (the composition root calls this every couple of seconds). */
  sample (): Promise<void>
}

const counterValue = async (c: { get (): Promise<{ values: Array<{ value: number }> }> }) =>
  (await c.get()).values.reduce((sum, v) => sum + v.value, 0)

/** p99 by linear interpolation inside the bucket, as Prometheus' histogram_quantile does. */
export function quantileFromBuckets (q: number, buckets: Array<[number, number]>): number | null {
  const total = buckets.at(-1)?.[1] ?? 0
  if (total <= 0) return null
  const rank = q * total
  let prevLe = 0
  let prevCount = 0
  for (const [le, count] of buckets) {
    if (count >= rank) {
      if (!Number.isFinite(le)) return prevLe
      return prevLe + (le - prevLe) * ((rank - prevCount) / Math.max(count - prevCount, 1e-9))
    }
    prevLe = le
    prevCount = count
  }
  return prevLe
}

export function createReplicaStats (opts: ReplicaStatsOptions): ReplicaStatsSampler {
  const windowMs = opts.windowMs ?? 10_000
  const samples: Sample[] = []

  async function take (): Promise<Sample> {
    const hist = await opts.metrics.pubackLatency.get()
    const ackBuckets = hist.values
      .filter((v) => v.metricName?.endsWith('_bucket'))
      .map((v) => [v.labels.le === '+Inf' ? Infinity : Number(v.labels.le), v.value] as [number, number])
      .sort((a, b) => a[0] - b[0])
    return {
      at: Date.now(),
      connects: await counterValue(opts.metrics.connects),
      stored: await counterValue(opts.metrics.rowsCommitted),
      ackBuckets
    }
  }

  return {
    async sample () {
      samples.push(await take())
      // Keep one sample at least a window old, so the window is always covered.
      while (samples.length > 2 && samples[1]!.at <= Date.now() - windowMs) samples.shift()
    },

    async snapshot (): Promise<ReplicaSnapshot> {
      const now = await take()
      const first = samples[0] ?? now
      const seconds = Math.max((now.at - first.at) / 1000, 0)
      const per = (a: number, b: number) => seconds > 0 ? Math.max(b - a, 0) / seconds : 0
      const before = new Map(first.ackBuckets)
      const delta = now.ackBuckets.map(([le, n]) => [le, n - (before.get(le) ?? 0)] as [number, number])
      const p99 = quantileFromBuckets(0.99, delta)
      return {
        rates: { connectsPerSecond: per(first.connects, now.connects), telemetryStoredPerSecond: per(first.stored, now.stored) },
        pubackP99Ms: p99 === null ? null : Math.round(p99 * 1000 * 10) / 10,
        ingest: {
          queueRows: opts.queueRows(),
          queueCapacity: opts.queueCapacity,
          backpressureSeconds: await counterValue(opts.metrics.backpressureSeconds)
        },
        windowSeconds: Math.round(seconds * 10) / 10
      }
    },

    async readiness (): Promise<ReplicaReadiness> {
      const [reason, database] = await Promise.all([opts.notReady(), opts.databaseOk()])
      const redis = opts.redisOk()
      return { ready: reason === undefined, reason: reason ?? null, database, redis: redis ?? null }
    }
  }
}

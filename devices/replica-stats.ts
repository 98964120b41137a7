// What GET /v1/overview reports about the replica that answers it: rates,
// ingest queue, PUBACK latency and readiness. These live in the broker
// process (metrics, queue, readiness checks), not in PostgreSQL; the broker's
// composition root implements this (broker/replica-stats.ts) and passes it in,
// so the control plane stays free of broker internals.
export interface ReplicaSnapshot {
  rates: { connectsPerSecond: number, telemetryStoredPerSecond: number }
  /** p99 of PUBLISH received → batch committed over the last window; null when nothing was stored in it. */
  pubackP99Ms: number | null
  ingest: { queueRows: number, queueCapacity: number, backpressureSeconds: number }
  /** Seconds the rates and the p99 are computed over. */
  windowSeconds: number
}

export interface ReplicaReadiness {
  ready: boolean
  /** Why not ready (the /readyz reason); null when ready. */
  reason: string | null
  database: boolean
  /** null when the broker runs without Redis (single replica). */
  redis: boolean | null
}

export interface ReplicaStats {
  snapshot (): Promise<ReplicaSnapshot>
  readiness (): Promise<ReplicaReadiness>
}

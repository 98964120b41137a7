/**
 * A recent whole second, an hour ago: reading times inside the accepted
 * window (TELEMETRY_RETENTION_DAYS back, TELEMETRY_MAX_FUTURE_MS ahead) and
 * inside the partitions that exist.
 */
export const T0 = Math.floor((Date.now() - 3_600_000) / 1000) * 1000
export const iso = (ms: number) => new Date(ms).toISOString()

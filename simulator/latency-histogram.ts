// Latency distributions of the simulator and the benchmarks, in HDR
// histograms (hdr-histogram-js): constant memory whatever the number of
// samples, mergeable across load processes (they travel as compressed
// base64), and percentiles without sorting every sample. Values are recorded
// in microseconds, from 1 µs to one hour, to 3 significant digits.
import * as hdr from 'hdr-histogram-js'

export type Histogram = hdr.Histogram

const HOUR_US = 3_600_000_000

export function latencyHistogram (): Histogram {
  return hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: HOUR_US, numberOfSignificantValueDigits: 3 })
}

/** Records a duration given in milliseconds (Date.now() differences). */
export function recordMs (h: Histogram, ms: number): void {
  h.recordValue(Math.min(HOUR_US, Math.max(1, Math.round(ms * 1000))))
}

/** Records a duration given in microseconds (process.hrtime differences). */
export function recordUs (h: Histogram, us: number): void {
  h.recordValue(Math.min(HOUR_US, Math.max(1, Math.round(us))))
}

export function encodeHistogram (h: Histogram): string {
  return hdr.encodeIntoCompressedBase64(h)
}

/** One histogram holding every sample of the encoded ones (from several processes). */
export function mergeHistograms (encoded: string[]): Histogram {
  const merged = latencyHistogram()
  for (const e of encoded) merged.add(hdr.decodeFromCompressedBase64(e))
  return merged
}

/**
 * The p-th percentile in milliseconds, rounded to `decimals` places; `empty`
 * when nothing was recorded.
 */
export function percentileMs (h: Histogram, p: number, decimals = 2, empty = 0): number {
  if (h.totalCount === 0) return empty
  const f = 10 ** decimals
  return Math.round(h.getValueAtPercentile(p) / 1000 * f) / f
}

/** The largest sample in whole milliseconds; `empty` when nothing was recorded. */
export function maxMs (h: Histogram, empty = 0): number {
  return h.totalCount === 0 ? empty : Math.round(h.maxValue / 1000)
}

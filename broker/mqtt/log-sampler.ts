// Rate-limited logging for what a device can make happen per message
// (dead-lettered telemetry, refused subscriptions, ignored reports): every
// one is counted in a metric, and a sample is logged — at most `max` lines
// per key and `intervalMs`, each saying how many were left out since the
// last line — so a misbehaving fleet cannot flood the logs (issue 16).

export interface LogSampler {
  /** undefined: skip this line; a number: log it, with this many left out before it. */
  take (key: string, now?: number): number | undefined
}

export function createLogSampler ({ max = 10, intervalMs = 10_000, maxKeys = 1000 } = {}): LogSampler {
  const windows = new Map<string, { start: number, logged: number, skipped: number }>()
  return {
    take (key, now = Date.now()) {
      let w = windows.get(key)
      if (!w || now - w.start >= intervalMs) {
        // Keys are reasons or kinds, a bounded set; the cap is a safeguard.
        if (!w && windows.size >= maxKeys) windows.clear()
        const skipped = w?.skipped ?? 0
        w = { start: now, logged: 1, skipped: 0 }
        windows.set(key, w)
        return skipped
      }
      if (w.logged < max) { w.logged++; const s = w.skipped; w.skipped = 0; return s }
      w.skipped++
      return undefined
    }
  }
}

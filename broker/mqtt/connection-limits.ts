// Limits against hostile or broken clients (issue 7), small and allocation-free
// on the hot path: a token bucket for new connections (a reconnect storm
// becomes queued CONNECTs, not an outage), increasing delays for addresses
// that keep failing authentication, and per-device publish budgets.

/** Token bucket with a bounded FIFO of waiters. */
export interface ConnectGate {
  /** Calls `go(true)` when a token is available (now or later), `go(false)` when the wait queue is full. */
  acquire (go: (admitted: boolean) => void): void
  readonly queued: number
  close (): void
}

export function createConnectGate (opts: { ratePerSecond: number, burst: number, maxQueued: number, now?: () => number }): ConnectGate {
  const now = opts.now ?? Date.now
  let tokens = opts.burst
  let last = now()
  const waiters: Array<(admitted: boolean) => void> = []
  let head = 0
  let timer: NodeJS.Timeout | undefined

  function refill () {
    const t = now()
    tokens = Math.min(opts.burst, tokens + (t - last) * opts.ratePerSecond / 1000)
    last = t
  }
  function drain () {
    timer = undefined
    refill()
    while (head < waiters.length && tokens >= 1) {
      tokens -= 1
      const go = waiters[head]!
      waiters[head++] = undefined as unknown as (a: boolean) => void
      go(true)
    }
    if (head > 1024 && head * 2 > waiters.length) { waiters.splice(0, head); head = 0 }
    if (head < waiters.length) timer = setTimeout(drain, Math.max(1, Math.ceil(1000 / opts.ratePerSecond)))
  }
  return {
    get queued () { return waiters.length - head },
    acquire (go) {
      refill()
      if (head === waiters.length && tokens >= 1) { tokens -= 1; go(true); return }
      if (waiters.length - head >= opts.maxQueued) { go(false); return }
      waiters.push(go)
      timer ??= setTimeout(drain, Math.max(1, Math.ceil(1000 / opts.ratePerSecond)))
    },
    close () {
      if (timer) clearTimeout(timer)
      for (let i = head; i < waiters.length; i++) waiters[i]!(false)
      waiters.length = 0; head = 0
    }
  }
}

/** Failed authentications per address: each one doubles the delay before the next refusal is sent. */
export interface AuthFailures {
  /** How long to hold this address's next refusal. */
  delayFor (address: string | undefined): number
  failed (address: string | undefined): void
  succeeded (address: string | undefined): void
  readonly tracked: number
}

export function createAuthFailures (opts: { baseDelayMs: number, maxDelayMs: number, forgetAfterMs: number, maxTracked: number, now?: () => number }): AuthFailures {
  const now = opts.now ?? Date.now
  const entries = new Map<string, { count: number, last: number }>()
  const get = (a: string) => {
    const e = entries.get(a)
    if (e && now() - e.last > opts.forgetAfterMs) { entries.delete(a); return undefined }
    return e
  }
  return {
    get tracked () { return entries.size },
    delayFor (address) {
      if (!address) return 0
      const e = get(address)
      return e ? Math.min(opts.maxDelayMs, opts.baseDelayMs * 2 ** Math.min(e.count - 1, 20)) : 0
    },
    failed (address) {
      if (!address) return
      const e = get(address)
      if (e) { e.count++; e.last = now(); return }
      // Bounded: the oldest address is forgotten first.
      if (entries.size >= opts.maxTracked) entries.delete(entries.keys().next().value as string)
      entries.set(address, { count: 1, last: now() })
    },
    succeeded (address) { if (address) entries.delete(address) }
  }
}

/** A device's publish budget in messages and bytes per second. */
export interface PublishBudget {
  /** 0 when the message fits now; otherwise how long (ms) to hold it back. */
  take (bytes: number, now: number): number
  /** Since when the device has been over budget without a break (0: it is not). */
  overSince: number
}

export function createPublishBudget (messagesPerSecond: number, bytesPerSecond: number, now: number): PublishBudget {
  // Burst: one second's worth.
  let msgs = messagesPerSecond
  let bytes = bytesPerSecond
  let last = now
  return {
    overSince: 0,
    take (size, t) {
      const dt = (t - last) / 1000
      last = t
      msgs = Math.min(messagesPerSecond, msgs + dt * messagesPerSecond)
      bytes = Math.min(bytesPerSecond, bytes + dt * bytesPerSecond)
      msgs -= 1
      bytes -= Math.min(size, bytesPerSecond)
      if (msgs >= 0 && bytes >= 0) { this.overSince = 0; return 0 }
      if (this.overSince === 0) this.overSince = t
      return Math.ceil(Math.max(-msgs / messagesPerSecond, -bytes / bytesPerSecond) * 1000)
    }
  }
}

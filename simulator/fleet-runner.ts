// A fleet of virtual devices (virtual-device.ts) in this process: the connect
// ramp, the shape of the telemetry load, churn, and what was measured. The
// simulator and the benchmarks run fleets in child processes
// (fleet-process.ts); the tests' loads run one in the test's process
// (test/helpers/qos1-load.ts). One timer wheel drives every device.
//
// Load shapes:
//   idle      no telemetry (devices that only follow config and commands)
//   interval  every device publishes every `intervalMs` ± `jitter` (a share)
//   window    every device keeps `window` messages unacknowledged, publishing
//             the next as one is acknowledged: as fast as the broker acks
//   rate      `perSecond` messages in total, spread round robin over the
//             devices that have fewer than `window` unacknowledged (open loop)
import { createVirtualDevice, type DeviceIdentity, type DeviceProfile, type VirtualDevice } from './virtual-device.js'
import { createTimerWheel } from './timer-wheel.js'
import { seededRandom } from './seeded-random.js'
import { encodeHistogram, latencyHistogram, mergeHistograms, percentileMs, recordMs, recordUs, type Histogram } from './latency-histogram.js'

export type LoadShape =
  | { kind: 'idle' }
  | { kind: 'interval', intervalMs: number, jitter: number }
  | { kind: 'window', window: number }
  | { kind: 'rate', perSecond: number, window: number }

/** A fleet, as plain data (it crosses to a fleet process). */
export interface FleetSpec {
  devices: DeviceIdentity[]
  profile: DeviceProfile
  load: LoadShape
  /** Connection attempts started per second; Infinity: all at once. */
  rampPerSecond: number
  /** Share of the connected devices whose connection drops each minute. */
  churnPerMinute: number
  seed: number
  /** Keep every acknowledged reading's sequence number per device (for --verify). */
  recordAcks: boolean
  /**
   * Benchmarks (window and rate loads): connect, but publish nothing until
   * release() — once every fleet has settled, so that devices connecting
   * late do not meet a broker already saturated by the early ones (they
   * timed out and gave up, and the run measured part of the fleet).
   */
  holdLoad?: boolean
}

/** In-process extras that cannot cross to a child process. */
export interface FleetHooks {
  /** One reading as JSON (default: the simulator's `{ts, seq, temp, hum, pad}`). */
  reading? (seq: number, ts: number): string
  acked? (id: string, seqs: number[], at: number): void
  configApplied? (id: string, version: number, at: number): void
}

/** Devices connected and subscribed at least once, or given up. */
export interface Readiness {
  devices: number
  ready: number
  gaveUp: number
  retries: number
  /** Failed connection attempts by reason (numbers replaced by N). */
  failureReasons: Record<string, number>
  /** Epoch ms of the first and the last device to become ready (0: none). */
  firstReadyAt: number
  lastReadyAt: number
}

/** A second's view, for a live status line. */
export interface FleetTick {
  connected: number
  connecting: number
  sent: number
  acked: number
  errors: Record<string, number>
  /** PUBACK latency over the last tick only. */
  p50Ms: number
  p99Ms: number
}

/** Everything measured since the start (or since measure()); histograms encoded, so reports merge across processes. */
export interface FleetReport {
  seconds: number
  sent: number
  acked: number
  /** Unacknowledged messages that ended with their clean session. */
  dropped: number
  errors: Record<string, number>
  puback: string
  connect: string
  connects: number
  firstConnectAt: number
  lastConnectAt: number
  readiness: Readiness
  acks: Record<string, number[]>
}

export interface Fleet {
  readonly devices: readonly VirtualDevice[]
  /** Resolves once every device has been ready once or has given up. */
  settled (): Promise<Readiness>
  readiness (): Readiness
  tick (): FleetTick
  /** Starts the measurement again: counters, PUBACK histogram and errors from zero. */
  /** With spec.holdLoad: starts publishing. */
  release (): void
  measure (): void
  report (): FleetReport
  /**
   * Stops publishing, lets messages in flight be acknowledged (for at most
   * `drainMs`; devices with messages in flight still reconnect), reports,
   * then closes every connection.
   */
  stop (opts?: { drainMs?: number }): Promise<FleetReport>
}

export function startFleet (spec: FleetSpec, hooks: FleetHooks = {}): Fleet {
  const { load } = spec
  const random = seededRandom(spec.seed)
  // Interval loads start on their own schedule: holdLoad is for window/rate.
  let publishing = !(spec.holdLoad === true && load.kind !== 'interval')
  let windingDown = false
  let sent = 0; let acked = 0; let dropped = 0
  let errors: Record<string, number> = {}
  let measureStart = Date.now()
  let puback = latencyHistogram(); let tickHist = latencyHistogram()
  const connectHist = latencyHistogram()
  let connects = 0; let firstConnectAt = 0; let lastConnectAt = 0
  const readiness: Readiness = { devices: spec.devices.length, ready: 0, gaveUp: 0, retries: 0, failureReasons: {}, firstReadyAt: 0, lastReadyAt: 0 }
  let settledWaiters: Array<(r: Readiness) => void> = []
  const acks = new Map<string, number[]>()
  const onlineOnce = new Set<VirtualDevice>()
  const publishingDevices = new Set<VirtualDevice>()
  const error = (kind: string) => { errors[kind] = (errors[kind] ?? 0) + 1 }

  const nextInterval = load.kind === 'interval' ? () => load.intervalMs * (1 + load.jitter * (random() * 2 - 1)) : () => 0
  const room = (d: VirtualDevice) => load.kind === 'window' || load.kind === 'rate' ? load.window - d.inflight : 0

  function checkSettled () {
    if (readiness.ready + readiness.gaveUp < readiness.devices) return
    const waiters = settledWaiters
    settledWaiters = []
    for (const w of waiters) w({ ...readiness })
  }

  function telemetryLoop (d: VirtualDevice) {
    if (!publishing) return
    d.publishTelemetry()
    wheel.schedule(Date.now() + nextInterval(), () => telemetryLoop(d))
  }

  function fillWindow (d: VirtualDevice) {
    if (!publishing || load.kind !== 'window') return
    for (let n = room(d); n > 0 && d.publishTelemetry(); n--);
  }

  // Open loop at a fixed total rate, credited per wheel tick, round robin over
  // the devices with room; never more than one second's worth behind.
  let credit = 0; let lastCredit = Date.now(); let next = 0
  function rateTick (now: number) {
    if (load.kind !== 'rate' || !publishing) return
    credit = Math.min(load.perSecond, credit + (now - lastCredit) * load.perSecond / 1000)
    lastCredit = now
    let scanned = 0
    while (credit >= 1 && scanned < devices.length) {
      const d = devices[next]!
      next = (next + 1) % devices.length
      if (d.connected && room(d) > 0 && d.publishTelemetry()) { credit -= 1; scanned = 0 } else scanned++
    }
  }

  const wheel = createTimerWheel({ onTick: rateTick })

  const host = {
    random,
    schedule: (at: number, fn: () => void) => wheel.schedule(at, fn),
    wantsConnection: (d: VirtualDevice) => !windingDown || d.inflight > 0,
    ...(hooks.reading ? { reading: hooks.reading } : {}),
    observer: {
      connected (d: VirtualDevice, latencyMs: number) {
        const now = Date.now()
        recordMs(connectHist, latencyMs)
        connects++
        if (!firstConnectAt) firstConnectAt = now
        lastConnectAt = now
        // Telemetry starts with the first connection, not waiting for SUBACKs, spread over one interval.
        if (load.kind === 'interval' && !publishingDevices.has(d)) {
          publishingDevices.add(d)
          wheel.schedule(now + random() * load.intervalMs, () => telemetryLoop(d))
        }
      },
      online (d: VirtualDevice, first: boolean) {
        if (first) {
          onlineOnce.add(d)
          const now = Date.now()
          readiness.ready++
          if (!readiness.firstReadyAt) readiness.firstReadyAt = now
          readiness.lastReadyAt = now
          checkSettled()
        }
        fillWindow(d)
      },
      connectFailed (_d: VirtualDevice, reason: string) {
        readiness.failureReasons[reason] = (readiness.failureReasons[reason] ?? 0) + 1
        readiness.retries++ // taken back below if this failure was the last one
      },
      disconnected () { error('disconnected') },
      gaveUp (d: VirtualDevice) {
        readiness.retries--
        // After having been ready, giving up is an error of the run, not a failure to connect.
        if (onlineOnce.has(d)) { error('gave_up'); return }
        readiness.gaveUp++
        checkSettled()
      },
      error,
      sent () { sent++ },
      acked (d: VirtualDevice, seqs: number[], latencyUs: number) {
        acked++
        recordUs(puback, latencyUs); recordUs(tickHist, latencyUs)
        if (spec.recordAcks) {
          const list = acks.get(d.id)
          if (list) list.push(...seqs); else acks.set(d.id, [...seqs])
        }
        hooks.acked?.(d.id, seqs, Date.now())
        fillWindow(d)
      },
      dropped (d: VirtualDevice) {
        dropped++
        fillWindow(d)
      },
      configApplied (d: VirtualDevice, version: number, at: number) { hooks.configApplied?.(d.id, version, at) }
    }
  }

  const devices = spec.devices.map((identity) => createVirtualDevice(identity, spec.profile, host))

  // The connect ramp.
  const t0 = Date.now()
  devices.forEach((d, i) => {
    const at = Number.isFinite(spec.rampPerSecond) ? t0 + i * 1000 / spec.rampPerSecond : t0
    wheel.schedule(at, () => { if (!windingDown) d.connect() })
  })
  if (devices.length === 0) checkSettled()

  // Churn: some devices lose their connection and come back through the backoff.
  const churn = spec.churnPerMinute > 0
    ? setInterval(() => {
      for (const d of devices) if (d.connected && random() < spec.churnPerMinute / 60) d.drop()
    }, 1000)
    : undefined

  function report (): FleetReport {
    return {
      seconds: (Date.now() - measureStart) / 1000,
      sent,
      acked,
      dropped,
      errors: { ...errors },
      puback: encodeHistogram(puback),
      connect: encodeHistogram(connectHist),
      connects,
      firstConnectAt,
      lastConnectAt,
      readiness: { ...readiness, failureReasons: { ...readiness.failureReasons } },
      acks: Object.fromEntries(acks)
    }
  }

  return {
    devices,
    settled () {
      return new Promise((resolve) => { settledWaiters.push(resolve); checkSettled() })
    },
    readiness: () => ({ ...readiness, failureReasons: { ...readiness.failureReasons } }),
    tick () {
      let connected = 0; let connecting = 0
      for (const d of devices) { if (d.connected) connected++; else if (d.connecting) connecting++ }
      const t: FleetTick = { connected, connecting, sent, acked, errors: { ...errors }, p50Ms: percentileMs(tickHist, 50), p99Ms: percentileMs(tickHist, 99) }
      tickHist = latencyHistogram()
      return t
    },
    release () {
      if (publishing || windingDown) return
      publishing = true
      lastCredit = Date.now()
      for (const d of devices) if (d.connected) fillWindow(d)
    },
    measure () {
      sent = 0; acked = 0; dropped = 0; errors = {}
      puback = latencyHistogram()
      measureStart = Date.now()
    },
    report,
    async stop ({ drainMs = 5000 } = {}) {
      publishing = false
      windingDown = true
      if (churn) clearInterval(churn)
      const deadline = Date.now() + drainMs
      while (Date.now() < deadline && devices.some((d) => d.inflight > 0 && !d.gaveUp)) {
        await new Promise((resolve) => setTimeout(resolve, 50))
      }
      wheel.stop()
      const final = report()
      await Promise.all(devices.map((d) => d.close()))
      return final
    }
  }
}

/** Reports of several fleets (processes) as one. */
export interface MergedReport {
  seconds: number
  sent: number
  acked: number
  dropped: number
  errors: Record<string, number>
  puback: Histogram
  connect: Histogram
  connects: number
  firstConnectAt: number
  lastConnectAt: number
  readiness: Readiness
  acks: Record<string, number[]>
}

export function mergeReadiness (all: Readiness[]): Readiness {
  const failureReasons: Record<string, number> = {}
  for (const r of all) for (const [k, v] of Object.entries(r.failureReasons)) failureReasons[k] = (failureReasons[k] ?? 0) + v
  const firsts = all.map((r) => r.firstReadyAt).filter((x) => x > 0)
  return {
    devices: all.reduce((a, r) => a + r.devices, 0),
    ready: all.reduce((a, r) => a + r.ready, 0),
    gaveUp: all.reduce((a, r) => a + r.gaveUp, 0),
    retries: all.reduce((a, r) => a + r.retries, 0),
    failureReasons,
    firstReadyAt: firsts.length > 0 ? Math.min(...firsts) : 0,
    lastReadyAt: Math.max(0, ...all.map((r) => r.lastReadyAt))
  }
}

export function mergeReports (reports: FleetReport[]): MergedReport {
  const errors: Record<string, number> = {}
  for (const r of reports) for (const [k, v] of Object.entries(r.errors)) errors[k] = (errors[k] ?? 0) + v
  const sum = (f: (r: FleetReport) => number) => reports.reduce((a, r) => a + f(r), 0)
  const firsts = reports.map((r) => r.firstConnectAt).filter((x) => x > 0)
  return {
    seconds: Math.max(0, ...reports.map((r) => r.seconds)),
    sent: sum((r) => r.sent),
    acked: sum((r) => r.acked),
    dropped: sum((r) => r.dropped),
    errors,
    puback: mergeHistograms(reports.map((r) => r.puback)),
    connect: mergeHistograms(reports.map((r) => r.connect)),
    connects: sum((r) => r.connects),
    firstConnectAt: firsts.length > 0 ? Math.min(...firsts) : 0,
    lastConnectAt: Math.max(0, ...reports.map((r) => r.lastConnectAt)),
    readiness: mergeReadiness(reports.map((r) => r.readiness)),
    acks: Object.assign({}, ...reports.map((r) => r.acks)) as Record<string, number[]>
  }
}

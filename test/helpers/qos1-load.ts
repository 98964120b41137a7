// Devices publishing QoS 1 telemetry as fast as a window of unacknowledged
// messages allows, over persistent sessions, reconnecting with backoff (so
// what is not acknowledged is retransmitted): a fleet of the simulator's
// virtual devices (simulator/fleet-runner.ts) in the test's process. Records
// every acknowledged reading as `${deviceId}:${n}`, for the fault tests'
// "stored exactly once".
import pg from 'pg'
import { startFleet } from '../../simulator/fleet-runner.js'
import { T0 } from './time.js'

export interface Qos1Load {
  /** Acknowledged readings, `${deviceId}:${n}`. */
  readonly acked: Set<string>
  /** When each acknowledgement arrived (epoch ms), in order. */
  readonly ackTimes: number[]
  /** Stops publishing, waits (at most 20 s) for what is in flight, closes the clients. */
  stop (): Promise<void>
}

/**
 * Resolves once every device is connected. `reconnectPeriod`: the first
 * reconnect delay (backoff with full jitter, growing to 4× that);
 * `payload(n)`: reading n (from 1), by default `{ ts: T0 - n, n }`.
 */
export async function startQos1Load (url: string, devices: Array<{ id: string, secret: string }>, opts: { window: number, reconnectPeriod?: number, payload?: (n: number) => object }): Promise<Qos1Load> {
  const acked = new Set<string>()
  const ackTimes: number[] = []
  const reconnectMs = opts.reconnectPeriod ?? 200
  const fleet = startFleet({
    devices: devices.map((d) => ({ id: d.id, secret: d.secret, broker: url })),
    profile: {
      qos: 1,
      clean: false,
      keepaliveSeconds: 60,
      connectTimeoutMs: 5000,
      readings: 1,
      payloadBytes: 0,
      config: false,
      commands: false,
      commandDelayMs: 0,
      commandFailRatio: 0,
      reconnect: { baseMs: reconnectMs, maxMs: 4 * reconnectMs, jitter: 'full' }
    },
    load: { kind: 'window', window: opts.window },
    rampPerSecond: Infinity,
    churnPerMinute: 0,
    seed: 1,
    recordAcks: false
  }, {
    reading: (n) => JSON.stringify(opts.payload?.(n) ?? { ts: T0 - n, n }),
    acked (id, seqs, at) {
      for (const n of seqs) acked.add(`${id}:${n}`)
      ackTimes.push(at)
    }
  })
  await fleet.settled()
  return {
    acked,
    ackTimes,
    async stop () { await fleet.stop({ drainMs: 20_000 }) }
  }
}

/** What the telemetry table holds of such a load: copies per `${deviceId}:${n}`, and the readings stored more than once. */
export async function storedReadings (databaseUrl: string): Promise<{ copies: Map<string, number>, duplicated: string[] }> {
  const client = new pg.Client({ connectionString: databaseUrl })
  await client.connect()
  try {
    const { rows } = await client.query<{ device_id: string, n: number, copies: number }>(
      "SELECT device_id, (payload->>'n')::int AS n, count(*)::int AS copies FROM telemetry GROUP BY 1, 2")
    const copies = new Map(rows.map((r) => [`${r.device_id}:${r.n}`, r.copies]))
    return { copies, duplicated: [...copies].filter(([, c]) => c > 1).map(([k]) => k) }
  } finally { await client.end() }
}

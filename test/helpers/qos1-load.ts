// Devices publishing QoS 1 telemetry as fast as a window of unacknowledged
// messages allows, over persistent sessions with automatic reconnects (so
// what is not acknowledged is retransmitted). Records every acknowledged
// reading as `${deviceId}:${n}`, for the fault tests' "stored exactly once".
import mqtt, { type MqttClient } from 'mqtt'
import pg from 'pg'
import { T0 } from './time.js'

export interface Qos1Load {
  /** Acknowledged readings, `${deviceId}:${n}`. */
  readonly acked: Set<string>
  /** When each acknowledgement arrived (epoch ms), in order. */
  readonly ackTimes: number[]
  /** Stops publishing, waits (at most 20 s) for what is in flight, closes the clients. */
  stop (): Promise<void>
}

export async function startQos1Load (url: string, devices: Array<{ id: string, secret: string }>, opts: { window: number, reconnectPeriod?: number, payload?: (n: number) => object }): Promise<Qos1Load> {
  const acked = new Set<string>()
  const ackTimes: number[] = []
  const clients: MqttClient[] = []
  const loops: Array<Promise<void>> = []
  let stopping = false
  for (const d of devices) {
    const client = mqtt.connect(url, { clientId: d.id, username: d.id, password: d.secret, clean: false, reconnectPeriod: opts.reconnectPeriod ?? 200, connectTimeout: 5000, keepalive: 60 })
    client.on('error', () => {})
    clients.push(client)
    await new Promise<void>((resolve) => client.once('connect', () => resolve()))
    loops.push((async () => {
      const inflight = new Set<Promise<void>>()
      for (let n = 0; !stopping; n++) {
        const p = new Promise<void>((resolve) => {
          client.publish(`devices/${d.id}/telemetry`, JSON.stringify(opts.payload?.(n) ?? { ts: T0 - n, n }), { qos: 1 }, (err) => {
            if (!err) { acked.add(`${d.id}:${n}`); ackTimes.push(Date.now()) }
            resolve()
          })
        }).finally(() => inflight.delete(p))
        inflight.add(p)
        if (inflight.size >= opts.window) await Promise.race(inflight)
      }
      await Promise.race([Promise.all(inflight), new Promise((resolve) => setTimeout(resolve, 20_000))])
    })())
  }
  return {
    acked,
    ackTimes,
    async stop () {
      stopping = true
      await Promise.all(loops)
      for (const c of clients) c.end(true)
    }
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

// A child process holding a slice of a fleet for the config benchmark: each
// device subscribes to devices/{id}/config, applies what it receives and
// reports the version on devices/{id}/config/reported (the public contract).
// Reports to the parent, per received version, the wall-clock time at which
// the report was acknowledged (PUBACK: the broker recorded it).
import { createConnection } from 'node:net'
import mqtt, { MqttClient, type IClientOptions } from 'mqtt'

/**
 * A device's own url (one of several replicas) wins over the common one;
 * localAddress: a loopback source address, for more ephemeral ports than one
 * address has (about 28,000 here).
 */
export interface AgentConfig { url: string, devices: Array<{ id: string, secret: string, url?: string }>, connectPerSecond: number, localAddress?: string }
export type AgentMessage =
  | { type: 'ready', connected: number, failed: number, firstMs: number, lastMs: number }
  | { type: 'reported', reports: Array<[string, number, number]> } // [deviceId, version, epoch ms]

process.once('message', async (cfg: AgentConfig) => {
  const clients: MqttClient[] = []
  let failed = 0
  let pending: Array<[string, number, number]> = []
  const flush = setInterval(() => {
    if (pending.length > 0) { process.send!({ type: 'reported', reports: pending } satisfies AgentMessage); pending = [] }
  }, 50)
  const spacing = 1000 / cfg.connectPerSecond
  const t0 = Date.now()
  let firstMs = Infinity; let lastMs = 0
  await Promise.all(cfg.devices.map(async (d, i) => {
    const wait = t0 + i * spacing - Date.now()
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait))
    try {
      const url = new URL(d.url ?? cfg.url)
      const options: IClientOptions = { clientId: d.id, username: d.id, password: d.secret, reconnectPeriod: 0, keepalive: 120, connectTimeout: 60_000 }
      const client = cfg.localAddress
        ? new MqttClient(() => createConnection({ host: url.hostname, port: Number(url.port || 1883), localAddress: cfg.localAddress }), options)
        : mqtt.connect(url.toString(), options)
      // A socket error closes the client without 'error': count it as failed rather than wait for ever.
      await new Promise<void>((resolve, reject) => {
        client.once('connect', () => resolve())
        client.once('error', reject)
        client.once('close', () => reject(new Error('connection closed before CONNACK')))
      })
      client.removeAllListeners('close')
      client.removeAllListeners('error')
      client.on('error', () => {})
      client.on('message', (topic, payload) => {
        const { version } = JSON.parse(payload.toString()) as { version: number }
        client.publish(`${topic}/reported`, JSON.stringify({ version }), { qos: 1 }, (err) => {
          if (!err) pending.push([d.id, version, Date.now()])
        })
      })
      await client.subscribeAsync(`devices/${d.id}/config`, { qos: 1 })
      clients.push(client)
      const now = Date.now()
      if (now < firstMs) firstMs = now
      if (now > lastMs) lastMs = now
    } catch { failed++ }
  }))
  process.send!({ type: 'ready', connected: clients.length, failed, firstMs, lastMs } satisfies AgentMessage)
  process.on('message', (m: { type: string }) => {
    if (m.type === 'stop') {
      clearInterval(flush)
      for (const c of clients) c.end(true)
      setTimeout(() => process.exit(0), 200)
    }
  })
})

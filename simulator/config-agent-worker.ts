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
  | { type: 'ready', connected: number, failed: number, retries: number, reasons: Record<string, number>, firstMs: number, lastMs: number }
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
  const reasons: Record<string, number> = {}
  let retries = 0
  // One attempt: resolves with a subscribed client, rejects with why not.
  async function attempt (d: AgentConfig['devices'][number]): Promise<MqttClient> {
    const url = new URL(d.url ?? cfg.url)
    const options: IClientOptions = { clientId: d.id, username: d.id, password: d.secret, reconnectPeriod: 0, keepalive: 120, connectTimeout: 30_000 }
    const client = cfg.localAddress
      ? new MqttClient(() => createConnection({ host: url.hostname, port: Number(url.port || 1883), localAddress: cfg.localAddress }), options)
      : mqtt.connect(url.toString(), options)
    try {
      // A socket error closes the client without 'error': a failure, not a wait for ever.
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
      return client
    } catch (err) {
      client.end(true)
      throw err
    }
  }
  await Promise.all(cfg.devices.map(async (d, i) => {
    const wait = t0 + i * spacing - Date.now()
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait))
    // As a device would: retry with exponential backoff and full jitter.
    for (let n = 0; ; n++) {
      try {
        const client = await attempt(d)
        clients.push(client)
        const now = Date.now()
        if (now < firstMs) firstMs = now
        if (now > lastMs) lastMs = now
        return
      } catch (err) {
        const reason = ((err as Error).message || 'error').replace(/\d+(\.\d+)*(:\d+)?/g, 'N')
        reasons[reason] = (reasons[reason] ?? 0) + 1
        if (n >= 8) { failed++; return }
        retries++
        await new Promise((resolve) => setTimeout(resolve, Math.random() * Math.min(1000 * 2 ** n, 15_000)))
      }
    }
  }))
  process.send!({ type: 'ready', connected: clients.length, failed, retries, reasons, firstMs, lastMs } satisfies AgentMessage)
  process.on('message', (m: { type: string }) => {
    if (m.type === 'stop') {
      clearInterval(flush)
      for (const c of clients) c.end(true)
      setTimeout(() => process.exit(0), 200)
    }
  })
})

// A child process holding a slice of a fleet for the config benchmark: each
// device subscribes to devices/{id}/config, applies what it receives and
// reports the version on devices/{id}/config/reported (the public contract).
// Reports to the parent, per received version, the wall-clock time at which
// the report was acknowledged (PUBACK: the broker recorded it).
import mqtt, { type MqttClient } from 'mqtt'

export interface AgentConfig { url: string, devices: Array<{ id: string, secret: string }>, connectPerSecond: number }
export type AgentMessage =
  | { type: 'ready', connected: number, failed: number }
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
  await Promise.all(cfg.devices.map(async (d, i) => {
    const wait = t0 + i * spacing - Date.now()
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait))
    try {
      const client = await mqtt.connectAsync(cfg.url, { clientId: d.id, username: d.id, password: d.secret, reconnectPeriod: 0, keepalive: 120, connectTimeout: 60_000 })
      client.on('message', (topic, payload) => {
        const { version } = JSON.parse(payload.toString()) as { version: number }
        client.publish(`${topic}/reported`, JSON.stringify({ version }), { qos: 1 }, (err) => {
          if (!err) pending.push([d.id, version, Date.now()])
        })
      })
      await client.subscribeAsync(`devices/${d.id}/config`, { qos: 1 })
      clients.push(client)
    } catch { failed++ }
  }))
  process.send!({ type: 'ready', connected: clients.length, failed } satisfies AgentMessage)
  process.on('message', (m: { type: string }) => {
    if (m.type === 'stop') {
      clearInterval(flush)
      for (const c of clients) c.end(true)
      setTimeout(() => process.exit(0), 200)
    }
  })
})

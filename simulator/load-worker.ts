// One load-generating child process: a slice of the virtual fleet, each
// device an MQTT connection publishing QoS 1 telemetry on the public topic
// devices/{id}/telemetry. Child processes, not threads: each process has its
// own 20,000-open-files budget. One scheduler tick drives every device (no
// per-device timers). Latency = publish to PUBACK, in an HDR histogram.
//
// Protocol with the parent (IPC): receives WorkerConfig, then 'measure' and
// 'report'/'stop' commands; sends 'connected', periodic 'tick' and 'report'.
import mqtt, { type MqttClient } from 'mqtt'
import * as hdr from 'hdr-histogram-js'

export interface WorkerDevice { id: string, secret?: string }

export interface WorkerConfig {
  url: string
  devices: WorkerDevice[]
  /** Connections opened per second by this worker. */
  connectPerSecond: number
  /** Outstanding (unacknowledged) publishes allowed per device. */
  window: number
  /** Total messages per second for this worker; 0 = as fast as PUBACKs allow. */
  ratePerSecond: number
  qos: 0 | 1
  /** Use credentials (fleetgate) or connect anonymously (plain MQTT brokers). */
  anonymous: boolean
  payloadBytes: number
}

export type WorkerMessage =
  | { type: 'connected', connected: number, failed: number, ms: number }
  | { type: 'tick', sent: number, acked: number, errors: number }
  | { type: 'report', sent: number, acked: number, errors: number, histogram: string, seconds: number }

interface Device { id: string, client: MqttClient, inflight: number, seq: number }

function send (m: WorkerMessage) { process.send?.(m) }

async function main (config: WorkerConfig) {
  const devices: Device[] = []
  let failed = 0
  let sent = 0
  let acked = 0
  let errors = 0
  const t0 = Date.now()
  const spacing = 1000 / config.connectPerSecond
  const connects: Array<Promise<void>> = []
  for (let i = 0; i < config.devices.length; i++) {
    const d = config.devices[i]!
    const due = t0 + i * spacing
    const wait = due - Date.now()
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait))
    connects.push(mqtt.connectAsync(config.url, {
      clientId: d.id,
      ...(config.anonymous ? {} : { username: d.id, password: d.secret }),
      reconnectPeriod: 0,
      connectTimeout: 30_000,
      keepalive: 60,
      clean: true
    }).then((client) => {
      client.on('error', () => { errors++ })
      devices.push({ id: d.id, client, inflight: 0, seq: 0 })
    }, () => { failed++ }))
  }
  await Promise.all(connects)
  send({ type: 'connected', connected: devices.length, failed, ms: Date.now() - t0 })

  let histogram = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 120_000_000, numberOfSignificantValueDigits: 3 })
  let measureStart = Date.now()
  const filler = 'x'.repeat(Math.max(0, config.payloadBytes - 90))

  function publish (d: Device) {
    d.inflight++
    sent++
    const started = process.hrtime.bigint()
    const payload = `{"ts":${Date.now()},"seq":${d.seq++},"temp":${(20 + Math.random() * 5).toFixed(2)},"hum":${(40 + Math.random() * 20).toFixed(1)},"f":"${filler}"}`
    d.client.publish(`devices/${d.id}/telemetry`, payload, { qos: config.qos }, (err) => {
      d.inflight--
      if (err) { errors++; return }
      acked++
      histogram.recordValue(Number(process.hrtime.bigint() - started) / 1000) // µs
      if (config.ratePerSecond === 0 && running) publish(d)
    })
  }

  let running = true
  let timer: NodeJS.Timeout | undefined
  if (config.ratePerSecond === 0) {
    // Saturation: every device keeps `window` messages outstanding.
    for (const d of devices) for (let w = 0; w < config.window; w++) publish(d)
  } else {
    // Open loop at a fixed total rate, round-robin over devices with room.
    const TICK_MS = 5
    let credit = 0
    let next = 0
    let last = Date.now()
    timer = setInterval(() => {
      const now = Date.now()
      credit += (now - last) * config.ratePerSecond / 1000
      last = now
      let scanned = 0
      while (credit >= 1 && scanned < devices.length) {
        const d = devices[next]!
        next = (next + 1) % devices.length
        if (d.inflight < config.window && d.client.connected) { publish(d); credit -= 1; scanned = 0 } else scanned++
      }
      if (credit > config.ratePerSecond) credit = config.ratePerSecond // never burst more than 1 s behind
    }, TICK_MS)
  }

  const ticker = setInterval(() => send({ type: 'tick', sent, acked, errors }), 1000)

  process.on('message', (cmd: { type: string }) => {
    if (cmd.type === 'measure') {
      histogram = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 120_000_000, numberOfSignificantValueDigits: 3 })
      sent = 0; acked = 0; errors = 0
      measureStart = Date.now()
    } else if (cmd.type === 'report') {
      send({ type: 'report', sent, acked, errors, histogram: hdr.encodeIntoCompressedBase64(histogram), seconds: (Date.now() - measureStart) / 1000 })
    } else if (cmd.type === 'stop') {
      running = false
      if (timer) clearInterval(timer)
      clearInterval(ticker)
      for (const d of devices) d.client.end(true)
      setTimeout(() => process.exit(0), 200)
    }
  })
}

process.once('message', (config: WorkerConfig) => {
  main(config).catch((err) => { console.error(err); process.exit(1) })
})

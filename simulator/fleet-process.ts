// One child process of the simulator: a slice of the virtual fleet (issue 4).
// Child processes, not threads: every process has its own 20,000-open-files
// budget. One timer wheel drives every device (telemetry, reconnects,
// command execution) — no per-device timers.
import { createConnection } from 'node:net'
import mqtt, { MqttClient, type IClientOptions } from 'mqtt'
import * as hdr from 'hdr-histogram-js'
import type { SimOptions } from './sim-options.js'

export interface FleetSlice {
  options: SimOptions
  devices: Array<{ id: string, secret?: string, broker: string, localAddress?: string }>
  processIndex: number
}

export type FleetMessage =
  | { type: 'tick', connected: number, connecting: number, sent: number, acked: number, errors: Record<string, number>, p50Ms: number, p99Ms: number, cpuSeconds: number }
  | { type: 'config-applied', id: string, version: number, at: number }
  | { type: 'command-done', id: string, commandId: string, at: number }
  | { type: 'final', sent: number, acked: number, errors: Record<string, number>, pubackHistogram: string, connectHistogram: string, connects: number, firstConnectMs: number, lastConnectMs: number, acks: Record<string, number[]>, cpuSeconds: number }

const SLOT_MS = 10

/** mulberry32: small, fast, seedable. */
function rng (seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6D2B79F5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

interface Device {
  id: string
  secret?: string
  broker: string
  localAddress?: string
  client?: MqttClient
  connected: boolean
  connecting: boolean
  connectStarted: number
  attempt: number
  seq: number
  applied: number
  started: boolean
  acks: number[]
}

type Action = { kind: 'telemetry' | 'connect' | 'command', device: Device, commandId?: string }

export async function runFleet (slice: FleetSlice, send: (m: FleetMessage) => void): Promise<() => Promise<void>> {
  const o = slice.options
  const random = rng(o.seed * 1000 + slice.processIndex)
  const wheel = new Map<number, Action[]>()
  let lastSlot = Math.floor(Date.now() / SLOT_MS)
  let stopping = false
  let sent = 0; let acked = 0; let connects = 0
  let firstConnect = 0; let lastConnect = 0
  const errors: Record<string, number> = {}
  const err = (kind: string) => { errors[kind] = (errors[kind] ?? 0) + 1 }
  const newHist = () => hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 3_600_000_000, numberOfSignificantValueDigits: 3 })
  const puback = newHist(); const connectHist = newHist(); let window = newHist()
  const filler = 'x'.repeat(Math.max(0, o.payloadBytes - 80))

  function schedule (at: number, action: Action) {
    const slot = Math.max(Math.floor(at / SLOT_MS), lastSlot + 1)
    const list = wheel.get(slot)
    if (list) list.push(action); else wheel.set(slot, [action])
  }
  const nextInterval = () => o.intervalMs * (1 + o.jitter * (random() * 2 - 1))

  function clientOptions (d: Device): IClientOptions {
    return {
      clientId: d.id,
      ...(d.secret ? { username: d.id, password: d.secret } : {}),
      clean: o.clean,
      keepalive: o.keepaliveSeconds,
      reconnectPeriod: 0, // reconnects are ours: exponential backoff with jitter
      connectTimeout: 30_000,
      resubscribe: true
    }
  }

  function connect (d: Device) {
    if (stopping) return
    d.connecting = true
    d.connectStarted = Date.now()
    if (d.client) { d.client.reconnect(); return }
    const url = new URL(d.broker)
    const client = d.localAddress && url.protocol === 'mqtt:'
      // A chosen loopback source address: more ephemeral ports per broker address.
      ? new MqttClient(() => createConnection({ host: url.hostname, port: Number(url.port || 1883), localAddress: d.localAddress }), clientOptions(d))
      : mqtt.connect(d.broker, clientOptions(d))
    d.client = client
    client.on('connect', () => {
      const now = Date.now()
      connectHist.recordValue((now - d.connectStarted) * 1000)
      if (!firstConnect) firstConnect = now
      lastConnect = now
      connects++
      d.connected = true; d.connecting = false; d.attempt = 0
      if (d.secret) {
        client.subscribe([`devices/${d.id}/config`, `devices/${d.id}/commands/+`], { qos: 1 }, (e) => { if (e) err('subscribe') })
      }
      if (!d.started) { d.started = true; schedule(now + random() * o.intervalMs, { kind: 'telemetry', device: d }) }
    })
    client.on('message', (topic, payload) => onMessage(d, topic, payload))
    client.on('error', (e: Error & { code?: unknown }) => err(typeof e.code === 'number' ? `connack_${e.code}` : 'connection'))
    client.on('close', () => {
      const was = d.connected
      d.connected = false
      if (stopping) return
      if (was) err('disconnected')
      d.connecting = true
      // Exponential backoff with full jitter: a fleet that lost its broker
      // does not come back as one thundering herd.
      const delay = Math.min(30_000, 500 * 2 ** Math.min(d.attempt++, 6)) * random()
      schedule(Date.now() + delay, { kind: 'connect', device: d })
    })
  }

  function onMessage (d: Device, topic: string, payload: Buffer) {
    try {
      if (topic === `devices/${d.id}/config`) {
        const msg = JSON.parse(payload.toString()) as { version: number }
        // Versions can arrive out of order (a push racing a subscribe): apply newer only.
        if (msg.version <= d.applied) return
        d.applied = msg.version
        d.client!.publish(`devices/${d.id}/config/reported`, JSON.stringify({ version: msg.version }), { qos: 1 }, (e) => {
          if (e) err('config_report'); else send({ type: 'config-applied', id: d.id, version: msg.version, at: Date.now() })
        })
      } else if (topic.startsWith(`devices/${d.id}/commands/`)) {
        const commandId = topic.slice(`devices/${d.id}/commands/`.length)
        schedule(Date.now() + o.commandDelayMs, { kind: 'command', device: d, commandId })
      }
    } catch { err('bad_message') }
  }

  function publishTelemetry (d: Device) {
    const client = d.client
    if (!client || !d.connected) { schedule(Date.now() + nextInterval(), { kind: 'telemetry', device: d }); return }
    const now = Date.now()
    const readings: string[] = []
    const seqs: number[] = []
    for (let k = 0; k < o.readings; k++) {
      const seq = ++d.seq
      seqs.push(seq)
      readings.push(`{"ts":${now - (o.readings - 1 - k)},"seq":${seq},"temp":${(15 + random() * 15).toFixed(2)},"hum":${(30 + random() * 40).toFixed(1)},"pad":"${filler}"}`)
    }
    const body = o.readings === 1 ? readings[0]! : `[${readings.join(',')}]`
    const t0 = process.hrtime.bigint()
    sent++
    client.publish(`devices/${d.id}/telemetry`, body, { qos: o.qos }, (e) => {
      if (e) { err('publish'); return }
      acked++
      const us = Number(process.hrtime.bigint() - t0) / 1000
      puback.recordValue(us); window.recordValue(us)
      if (o.qos === 1 && o.verify) for (const s of seqs) d.acks.push(s)
    })
    schedule(now + nextInterval(), { kind: 'telemetry', device: d })
  }

  function executeCommand (d: Device, commandId: string) {
    const status = random() < o.commandFailRatio ? 'failed' : 'succeeded'
    d.client?.publish(`devices/${d.id}/commands/${commandId}/result`, JSON.stringify({ status, result: { by: 'fleetgate-simulator' } }), { qos: 1 }, (e) => {
      if (e) err('command_result'); else send({ type: 'command-done', id: d.id, commandId, at: Date.now() })
    })
  }

  const devices: Device[] = slice.devices.map((x) => ({ ...x, connected: false, connecting: false, connectStarted: 0, attempt: 0, seq: 0, applied: 0, started: false, acks: [] }))
  // The connect ramp: this process's share of the total rate.
  const t0 = Date.now()
  devices.forEach((d, i) => schedule(t0 + i * 1000 / o.rampPerSecond, { kind: 'connect', device: d }))

  const tick = setInterval(() => {
    const now = Date.now()
    const slot = Math.floor(now / SLOT_MS)
    for (let s = lastSlot + 1; s <= slot; s++) {
      const list = wheel.get(s)
      if (!list) continue
      wheel.delete(s)
      for (const a of list) {
        if (stopping && a.kind !== 'command') continue
        if (a.kind === 'telemetry') publishTelemetry(a.device)
        else if (a.kind === 'connect') connect(a.device)
        else executeCommand(a.device, a.commandId!)
      }
    }
    lastSlot = slot
  }, SLOT_MS)

  // Churn: some devices drop their connection and come back through the backoff.
  const churn = o.churnPerMinute > 0
    ? setInterval(() => {
      for (const d of devices) {
        if (d.connected && random() < o.churnPerMinute / 60) (d.client as unknown as { stream: { destroy (): void } }).stream.destroy()
      }
    }, 1000)
    : undefined

  const cpu0 = process.cpuUsage()
  const cpuSeconds = () => { const c = process.cpuUsage(cpu0); return (c.user + c.system) / 1e6 }
  const status = setInterval(() => {
    let connected = 0; let connecting = 0
    for (const d of devices) { if (d.connected) connected++; else if (d.connecting) connecting++ }
    send({ type: 'tick', connected, connecting, sent, acked, errors: { ...errors }, p50Ms: window.getValueAtPercentile(50) / 1000, p99Ms: window.getValueAtPercentile(99) / 1000, cpuSeconds: cpuSeconds() })
    window = newHist()
  }, 1000)

  return async function stop () {
    stopping = true
    clearInterval(status)
    if (churn) clearInterval(churn)
    // Let in-flight QoS 1 messages be acknowledged (bounded).
    const deadline = Date.now() + 5000
    while (Date.now() < deadline && devices.some((d) => d.connected && (d.client as unknown as { outgoing: object }).outgoing && Object.keys((d.client as unknown as { outgoing: object }).outgoing).length > 0)) {
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
    clearInterval(tick)
    send({
      type: 'final',
      sent,
      acked,
      errors,
      connects,
      pubackHistogram: hdr.encodeIntoCompressedBase64(puback),
      connectHistogram: hdr.encodeIntoCompressedBase64(connectHist),
      firstConnectMs: firstConnect,
      lastConnectMs: lastConnect,
      acks: o.verify ? Object.fromEntries(devices.map((d) => [d.id, d.acks])) : {},
      cpuSeconds: cpuSeconds()
    })
    await Promise.all(devices.map((d) => d.client ? d.client.endAsync(true).catch(() => {}) : undefined))
  }
}

// As a child process: receive the slice, run, stop on request.
if (process.send) {
  process.once('message', (slice: FleetSlice) => {
    runFleet(slice, (m) => process.send!(m)).then((stop) => {
      process.on('message', (m: { type: string }) => {
        if (m.type === 'stop') void stop().then(() => process.exit(0))
      })
    }, (e: unknown) => { console.error(e); process.exit(1) })
  })
}

// `npm run simulate -- …` — the fleet load generator (issue 4). Talks to the
// broker only through the public contract (MQTT topics, REST), so it runs
// against any fleetgate deployment, and with --no-provision against any MQTT
// broker. See `npm run simulate -- --help`.
import { existsSync } from 'node:fs'
import { writeFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { parseSimOptions, OptionError, USAGE, type SimOptions } from './sim-options.js'
import { forkFleets } from './fleet-process.js'
import type { FleetSpec } from './fleet-runner.js'
import type { DeviceIdentity } from './virtual-device.js'
import { createApiClient, type ApiClient } from './api-client.js'
import { credentialsFileWriter, provisionDevices, ProvisioningError, readCredentialsFile } from './provisioning.js'
import { latencyHistogram, maxMs, percentileMs, recordMs } from './latency-histogram.js'

interface Creds { id: string, secret?: string }

export interface SimSummary {
  devices: number
  /** MQTT protocol level of the fleet: 4 (3.1.1) or 5. */
  protocolVersion: 4 | 5
  processes: number
  durationSeconds: number
  connect: { connected: number, ratePerSecond: number, p50Ms: number, p99Ms: number, maxMs: number }
  messages: { sent: number, acked: number, ackedPerSecond: number, readingsPerMessage: number }
  puback: { p50Ms: number, p90Ms: number, p99Ms: number, maxMs: number }
  configRoundTrip: { count: number, p50Ms: number, p99Ms: number, maxMs: number }
  /** unanswered: probes whose command was not final when GET ?waitSeconds=30 answered (their times are in the percentiles). */
  commandRoundTrip: { count: number, p50Ms: number, p99Ms: number, maxMs: number, failed: number, unanswered: number }
  errors: Record<string, number>
  simulatorCpuPercent: number
  verify?: { checkedDevices: number, acknowledged: number, stored: number, lost: number, duplicated: number }
}

const log = (line: string) => process.stderr.write(line + '\n')

async function fleetCredentials (o: SimOptions, api: ApiClient | undefined): Promise<Creds[]> {
  if (!o.provision) return Array.from({ length: o.devices }, (_, i) => ({ id: `${o.idPrefix}-${o.seed}-${i + 1}` }))
  if (o.credentials && existsSync(o.credentials)) {
    const creds = await readCredentialsFile(o.credentials)
    if (creds.length < o.devices) throw new OptionError(`--credentials ${o.credentials} holds ${creds.length} devices, fewer than --devices ${o.devices}`)
    if (!o.quiet) log(`using ${o.devices} devices from ${o.credentials}`)
    return creds.slice(0, o.devices)
  }
  const t0 = Date.now()
  // Streamed: each batch of secrets goes to --credentials as it arrives, so a
  // run whose provisioning fails part-way still keeps the devices it created.
  const file = o.credentials ? credentialsFileWriter(o.credentials) : undefined
  try {
    const created = await provisionDevices(api!, { count: o.devices, idPrefix: o.idPrefix, labels: { ...o.labels, simulator: o.idPrefix } }, (batch) => file?.append(batch))
    if (!o.quiet) log(`provisioned ${created.length} devices in ${Date.now() - t0} ms`)
    return created
  } catch (err) {
    if (!(err instanceof ProvisioningError)) throw err
    const kept = err.created.length === 0 ? '' : file ? `; the ${err.created.length} devices created are in ${o.credentials}` : `; ${err.created.length} devices were created (give --credentials FILE to keep their secrets)`
    throw new Error(`${err.message}${kept}; use another --id-prefix or --credentials`)
  } finally {
    file?.close()
  }
}

export async function simulate (o: SimOptions, onStatus: (line: string) => void = log): Promise<SimSummary> {
  const api = o.api ? createApiClient(o.api, o.token) : undefined
  const creds = await fleetCredentials(o, api)
  const processes = Math.max(1, Math.ceil(creds.length / o.devicesPerProcess))
  const isLoopback = (b: string) => /^(127\.|localhost$)/.test(new URL(b).hostname)
  const slices: DeviceIdentity[][] = Array.from({ length: processes }, () => [])
  creds.forEach((c, i) => {
    const broker = o.brokers[i % o.brokers.length]!
    const localAddress = o.sourceAddresses > 1 && isLoopback(broker) ? `127.0.0.${1 + (i % o.sourceAddresses)}` : undefined
    slices[i % processes]!.push({ id: c.id, secret: c.secret, broker, localAddress })
  })
  const specs: FleetSpec[] = slices.map((devices, p) => ({
    devices,
    profile: {
      protocolVersion: o.protocolVersion,
      qos: o.qos,
      clean: o.clean,
      keepaliveSeconds: o.keepaliveSeconds,
      connectTimeoutMs: 30_000,
      readings: o.readings,
      payloadBytes: o.payloadBytes,
      // Provisioned devices follow the whole contract; anonymous ones (any MQTT broker) only publish.
      config: o.provision,
      commands: o.provision,
      commandDelayMs: o.commandDelayMs,
      commandFailRatio: o.commandFailRatio,
      configFailRatio: o.configFailRatio,
      reconnect: { baseMs: 500, maxMs: 30_000, jitter: 'full' }
    },
    load: { kind: 'interval', intervalMs: o.intervalMs, jitter: o.jitter },
    rampPerSecond: o.rampPerSecond / processes,
    churnPerMinute: o.churnPerMinute,
    seed: o.seed * 1000 + p,
    recordAcks: o.verify && o.qos === 1
  }))

  const configSent = new Map<string, number>()
  const configRtt = latencyHistogram()
  const commandRtt = latencyHistogram(); let commandsFailed = 0; let commandsUnanswered = 0
  const fleets = forkFleets(specs, {
    configApplied (id, version, at) {
      const t = configSent.get(`${id}:${version}`)
      if (t !== undefined) { recordMs(configRtt, at - t); configSent.delete(`${id}:${version}`) }
    }
  })

  const started = Date.now()
  const rampSeconds = creds.length / o.rampPerSecond
  const runUntil = started + (rampSeconds + o.durationSeconds) * 1000
  let lastAcked = 0; let lastAt = started
  const tty = process.stderr.isTTY && !o.quiet
  const statusTimer = setInterval(() => {
    const all = fleets.ticks()
    const sum = (f: (t: typeof all[number]) => number) => all.reduce((a, t) => a + f(t), 0)
    const acked = sum((t) => t.acked); const now = Date.now()
    const rate = Math.round((acked - lastAcked) / ((now - lastAt) / 1000)); lastAcked = acked; lastAt = now
    const errs = all.reduce((a, t) => a + Object.values(t.errors).reduce((x, y) => x + y, 0), 0)
    const line = `t=${Math.round((now - started) / 1000)}s connected ${sum((t) => t.connected)}/${creds.length} connecting ${sum((t) => t.connecting)} sent ${sum((t) => t.sent)} acked ${acked} (${rate}/s) puback p50 ${Math.max(...all.map((t) => t.p50Ms), 0).toFixed(1)} ms p99 ${Math.max(...all.map((t) => t.p99Ms), 0).toFixed(1)} ms errors ${errs}`
    if (tty) process.stderr.write('\r\x1b[2K' + line)
    else if (!o.quiet && Math.round((now - started) / 1000) % 10 === 0) onStatus(line)
  }, 1000)

  // Probes: a config push and a command to a random device, timed end to end.
  // The command's round trip runs from the start of its POST to the answer
  // of GET ?waitSeconds (the device's result, committed), into an HDR
  // histogram (latency-histogram.ts).
  let probeN = 0
  // A device that is online (presence is written within PRESENCE_FLUSH_MS of
  // its CONNECT; it subscribes right after its CONNACK): a probe to a device
  // still connecting would time its connect and subscribe, not the round
  // trip (issue 15). Up to 10 tries (a cheap GET each), else this probe is skipped.
  const onlineDevice = async (): Promise<Creds | undefined> => {
    for (let i = 0; i < 10; i++) {
      const d = creds[Math.floor(Math.random() * creds.length)]!
      const r = await api!.call('GET', `/v1/devices/${encodeURIComponent(d.id)}`)
      if (r.status === 200 && (JSON.parse(r.text) as { online?: unknown }).online === true) return d
    }
    return undefined
  }
  const probe = async () => {
    if (!api || !o.provision) return
    const d = await onlineDevice()
    if (!d) return
    const t0 = Date.now()
    const put = await api.call('PUT', `/v1/devices/${d.id}/config`, { config: { probe: ++probeN, sampleEverySeconds: 10 } })
    if (put.status === 200) configSent.set(`${d.id}:${(JSON.parse(put.text) as { version: number }).version}`, t0)
    const c0 = Date.now()
    const post = await api.call('POST', `/v1/devices/${d.id}/commands`, { name: 'ping', params: { n: probeN }, ttlSeconds: 60 })
    if (post.status !== 202) return
    const id = (JSON.parse(post.text) as { id: string }).id
    const got = await api.call('GET', `/v1/commands/${id}?waitSeconds=30`)
    const cmd = JSON.parse(got.text) as { status: string }
    // One not finished when the wait ended is recorded too (its time is a
    // lower bound), so a slow tail cannot drop out of the percentiles.
    recordMs(commandRtt, Date.now() - c0)
    if (cmd.status === 'failed') commandsFailed++
    else if (cmd.status !== 'succeeded') commandsUnanswered++
  }
  const probes: Array<Promise<void>> = []
  // Probing starts once every device has been online once (or gave up):
  // during the ramp the fleet's processes are busy connecting and answer
  // late, which times the load generator, not the broker. At the latest a
  // third into the measured duration, so a device that never connects
  // cannot leave a run without probes.
  let probeTimer: NodeJS.Timeout | undefined
  let latestStart: NodeJS.Timeout | undefined
  let stopped = false
  const startProbes = () => {
    if (stopped || probeTimer) return
    clearTimeout(latestStart)
    probeTimer = setInterval(() => { probes.push(probe().catch(() => {})) }, o.probeEverySeconds * 1000)
  }
  if (o.probeEverySeconds > 0) {
    latestStart = setTimeout(startProbes, (rampSeconds + o.durationSeconds / 3) * 1000)
    fleets.settled().then(startProbes, startProbes)
  }

  try {
    await new Promise((resolve) => setTimeout(resolve, runUntil - Date.now()))
  } finally {
    stopped = true
    clearTimeout(latestStart)
    if (probeTimer) clearInterval(probeTimer)
    await Promise.all(probes)
    clearInterval(statusTimer)
    if (tty) process.stderr.write('\n')
  }
  const cpuAtEnd = fleets.ticks().reduce((a, t) => a + t.cpuSeconds, 0)
  const final = await fleets.stop(5000)
  const elapsed = (Date.now() - started) / 1000

  const { puback: pub, connect: con } = final
  const first = final.firstConnectAt; const last = final.lastConnectAt
  const connected = final.connects
  const summary: SimSummary = {
    devices: creds.length,
    protocolVersion: o.protocolVersion,
    processes,
    durationSeconds: Math.round(elapsed * 10) / 10,
    connect: { connected, ratePerSecond: last > first ? Math.round(connected / ((last - first) / 1000)) : connected, p50Ms: percentileMs(con, 50), p99Ms: percentileMs(con, 99), maxMs: maxMs(con) },
    messages: { sent: final.sent, acked: final.acked, ackedPerSecond: Math.round(final.acked / Math.max(1, o.durationSeconds + rampSeconds)), readingsPerMessage: o.readings },
    puback: { p50Ms: percentileMs(pub, 50), p90Ms: percentileMs(pub, 90), p99Ms: percentileMs(pub, 99), maxMs: maxMs(pub) },
    configRoundTrip: { count: configRtt.totalCount, p50Ms: percentileMs(configRtt, 50, 0), p99Ms: percentileMs(configRtt, 99, 0), maxMs: maxMs(configRtt) },
    commandRoundTrip: { count: commandRtt.totalCount, p50Ms: percentileMs(commandRtt, 50, 0), p99Ms: percentileMs(commandRtt, 99, 0), maxMs: maxMs(commandRtt), failed: commandsFailed, unanswered: commandsUnanswered },
    errors: final.errors,
    simulatorCpuPercent: Math.round((cpuAtEnd || final.cpuSeconds) / elapsed * 100)
  }
  // Every device of the fleet is checked, also one that got no PUBACK (its
  // readings, if any were stored, count as stored, not as acknowledged).
  if (o.verify) summary.verify = await verify(api!, Object.fromEntries(creds.map((c) => [c.id, final.acks[c.id] ?? []])), started)
  return summary
}

/** Every acknowledged reading must be stored exactly once (read back through the API). */
async function verify (api: ApiClient, acks: Record<string, number[]>, started: number): Promise<NonNullable<SimSummary['verify']>> {
  const from = new Date(started - 60_000).toISOString()
  let acknowledged = 0; let stored = 0; let lost = 0; let duplicated = 0; let checked = 0
  const ids = Object.keys(acks)
  let next = 0
  await Promise.all(Array.from({ length: 8 }, async () => {
    while (next < ids.length) {
      const id = ids[next++]!
      const seen = new Map<number, number>()
      let cursor: string | null = null
      do {
        const r = await api.call('GET', `/v1/devices/${id}/telemetry?from=${encodeURIComponent(from)}&limit=1000${cursor ? `&cursor=${cursor}` : ''}`)
        if (r.status !== 200) throw new Error(`verify: telemetry of ${id}: ${r.status} ${r.text.slice(0, 200)}`)
        const page = JSON.parse(r.text) as { items: Array<{ payload: { seq?: number } }>, nextCursor: string | null }
        for (const it of page.items) if (typeof it.payload.seq === 'number') seen.set(it.payload.seq, (seen.get(it.payload.seq) ?? 0) + 1)
        cursor = page.nextCursor
      } while (cursor)
      checked++
      for (const seq of acks[id]!) {
        acknowledged++
        const n = seen.get(seq) ?? 0
        if (n === 0) lost++
      }
      for (const n of seen.values()) { stored += n; if (n > 1) duplicated += n - 1 }
    }
  }))
  return { checkedDevices: checked, acknowledged, stored, lost, duplicated }
}

function printSummary (s: SimSummary) {
  const out = process.stdout
  out.write(`\nfleetgate simulator — ${s.devices} MQTT ${s.protocolVersion === 5 ? '5' : '3.1.1'} devices in ${s.processes} process(es), ${s.durationSeconds} s\n`)
  out.write(`  connect       ${s.connect.connected} connects, ${s.connect.ratePerSecond}/s, latency p50 ${s.connect.p50Ms} ms p99 ${s.connect.p99Ms} ms max ${s.connect.maxMs} ms\n`)
  out.write(`  messages      sent ${s.messages.sent}, acknowledged ${s.messages.acked} (${s.messages.ackedPerSecond}/s, ${s.messages.readingsPerMessage} reading(s) each)\n`)
  out.write(`  PUBACK        p50 ${s.puback.p50Ms} ms  p90 ${s.puback.p90Ms} ms  p99 ${s.puback.p99Ms} ms  max ${s.puback.maxMs} ms\n`)
  out.write(`  config RTT    ${s.configRoundTrip.count} probes, p50 ${s.configRoundTrip.p50Ms} ms p99 ${s.configRoundTrip.p99Ms} ms max ${s.configRoundTrip.maxMs} ms\n`)
  out.write(`  command RTT   ${s.commandRoundTrip.count} probes (${s.commandRoundTrip.failed} failed, ${s.commandRoundTrip.unanswered} unanswered), p50 ${s.commandRoundTrip.p50Ms} ms p99 ${s.commandRoundTrip.p99Ms} ms max ${s.commandRoundTrip.maxMs} ms\n`)
  out.write(`  errors        ${Object.entries(s.errors).map(([k, v]) => `${k} ${v}`).join(', ') || 'none'}\n`)
  out.write(`  simulator CPU ${s.simulatorCpuPercent}% of one core\n`)
  if (s.verify) out.write(`  verify        ${s.verify.checkedDevices} devices: ${s.verify.acknowledged} acknowledged, ${s.verify.lost} lost, ${s.verify.duplicated} duplicated\n`)
}

const isMain = process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]
if (isMain) {
  let options: SimOptions
  try {
    options = parseSimOptions(process.argv.slice(2))
  } catch (err) {
    if (err instanceof OptionError && err.message === 'help') { process.stdout.write(USAGE + '\n'); process.exit(0) }
    process.stderr.write(`simulate: ${(err as Error).message}\n\n${USAGE}\n`)
    process.exit(2)
  }
  try {
    const summary = await simulate(options)
    printSummary(summary)
    if (options.report) await writeFile(options.report, JSON.stringify({ date: new Date().toISOString(), options: { ...options, token: options.token ? '[redacted]' : undefined }, summary }, null, 2))
    process.exit(summary.verify && (summary.verify.lost > 0 || summary.verify.duplicated > 0) ? 1 : 0)
  } catch (err) {
    process.stderr.write(`simulate: ${(err as Error).message}\n`)
    process.exit(1)
  }
}

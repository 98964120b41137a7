// `npm run simulate -- …` — the fleet load generator (issue 4). Talks to the
// broker only through the public contract (MQTT topics, REST), so it runs
// against any fleetgate deployment, and with --no-provision against any MQTT
// broker. See `npm run simulate -- --help`.
import { fork, type ChildProcess } from 'node:child_process'
import { existsSync } from 'node:fs'
import { readFile, writeFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import * as hdr from 'hdr-histogram-js'
import { parseSimOptions, OptionError, USAGE, type SimOptions } from './sim-options.js'
import type { FleetMessage, FleetSlice } from './fleet-process.js'

interface Creds { id: string, secret?: string }

export interface SimSummary {
  devices: number
  processes: number
  durationSeconds: number
  connect: { connected: number, ratePerSecond: number, p50Ms: number, p99Ms: number, maxMs: number }
  messages: { sent: number, acked: number, ackedPerSecond: number, readingsPerMessage: number }
  puback: { p50Ms: number, p90Ms: number, p99Ms: number, maxMs: number }
  configRoundTrip: { count: number, p50Ms: number, p99Ms: number, maxMs: number }
  commandRoundTrip: { count: number, p50Ms: number, p99Ms: number, maxMs: number, failed: number }
  errors: Record<string, number>
  simulatorCpuPercent: number
  verify?: { checkedDevices: number, acknowledged: number, stored: number, lost: number, duplicated: number }
}

const log = (line: string) => process.stderr.write(line + '\n')
const pct = (xs: number[], p: number) => xs.length === 0 ? 0 : [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.ceil(p / 100 * xs.length) - 1)]!

async function apiCall (o: SimOptions, method: string, path: string, body?: unknown): Promise<{ status: number, text: string }> {
  const res = await fetch(o.api + path, {
    method,
    headers: { authorization: `Bearer ${o.token}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {})
  })
  return { status: res.status, text: await res.text() }
}

async function fleetCredentials (o: SimOptions): Promise<Creds[]> {
  if (!o.provision) return Array.from({ length: o.devices }, (_, i) => ({ id: `${o.idPrefix}-${o.seed}-${i + 1}` }))
  if (o.credentials && existsSync(o.credentials)) {
    const creds = (await readFile(o.credentials, 'utf8')).trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Creds)
    if (creds.length < o.devices) throw new OptionError(`--credentials ${o.credentials} holds ${creds.length} devices, fewer than --devices ${o.devices}`)
    if (!o.quiet) log(`using ${o.devices} devices from ${o.credentials}`)
    return creds.slice(0, o.devices)
  }
  const t0 = Date.now()
  const r = await apiCall(o, 'POST', '/v1/devices/bulk', { count: o.devices, idPrefix: o.idPrefix, labels: { ...o.labels, simulator: o.idPrefix } })
  if (r.status !== 200) throw new Error(`provisioning failed: ${r.status} ${r.text.slice(0, 300)}`)
  const lines = r.text.trim().split('\n').map((l) => JSON.parse(l) as Creds & { error?: string })
  const failed = lines.filter((l) => l.error)
  if (failed.length > 0) throw new Error(`${failed.length} devices could not be created (e.g. ${failed[0]!.id}: ${failed[0]!.error}); use another --id-prefix or --credentials`)
  if (!o.quiet) log(`provisioned ${lines.length} devices in ${Date.now() - t0} ms`)
  if (o.credentials) await writeFile(o.credentials, lines.map((l) => JSON.stringify({ id: l.id, secret: l.secret })).join('\n') + '\n', { mode: 0o600 })
  return lines
}

export async function simulate (o: SimOptions, onStatus: (line: string) => void = log): Promise<SimSummary> {
  const creds = await fleetCredentials(o)
  const processes = Math.max(1, Math.ceil(creds.length / o.devicesPerProcess))
  const isLoopback = (b: string) => /^(127\.|localhost$)/.test(new URL(b).hostname)
  const slices: FleetSlice[] = Array.from({ length: processes }, (_, p) => ({ options: { ...o, rampPerSecond: o.rampPerSecond / processes }, devices: [], processIndex: p }))
  creds.forEach((c, i) => {
    const broker = o.brokers[i % o.brokers.length]!
    const localAddress = o.sourceAddresses > 1 && isLoopback(broker) ? `127.0.0.${1 + (i % o.sourceAddresses)}` : undefined
    slices[i % processes]!.devices.push({ id: c.id, secret: c.secret, broker, localAddress })
  })

  // Run compiled (dist/…/fleet-process.js) or under tsx (….ts), like this file.
  const ext = import.meta.url.endsWith('.ts') ? '.ts' : '.js'
  const childPath = fileURLToPath(new URL(`./fleet-process${ext}`, import.meta.url))
  const children: ChildProcess[] = []
  const ticks = new Map<number, Extract<FleetMessage, { type: 'tick' }>>()
  const finals: Array<Extract<FleetMessage, { type: 'final' }>> = []
  const configSent = new Map<string, number>(); const configRtt: number[] = []
  const commandRtt: number[] = []; let commandsFailed = 0

  for (const slice of slices) {
    const child = fork(childPath, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
    children.push(child)
    child.on('message', (m: FleetMessage) => {
      if (m.type === 'tick') ticks.set(slice.processIndex, m)
      else if (m.type === 'final') finals.push(m)
      else if (m.type === 'config-applied') {
        const t = configSent.get(`${m.id}:${m.version}`)
        if (t !== undefined) { configRtt.push(m.at - t); configSent.delete(`${m.id}:${m.version}`) }
      }
    })
    child.send(slice)
  }

  const started = Date.now()
  const rampSeconds = creds.length / o.rampPerSecond
  const runUntil = started + (rampSeconds + o.durationSeconds) * 1000
  let lastAcked = 0; let lastAt = started
  const tty = process.stderr.isTTY && !o.quiet
  const statusTimer = setInterval(() => {
    const all = [...ticks.values()]
    const sum = (f: (t: Extract<FleetMessage, { type: 'tick' }>) => number) => all.reduce((a, t) => a + f(t), 0)
    const acked = sum((t) => t.acked); const now = Date.now()
    const rate = Math.round((acked - lastAcked) / ((now - lastAt) / 1000)); lastAcked = acked; lastAt = now
    const errs = all.reduce((a, t) => a + Object.values(t.errors).reduce((x, y) => x + y, 0), 0)
    const line = `t=${Math.round((now - started) / 1000)}s connected ${sum((t) => t.connected)}/${creds.length} connecting ${sum((t) => t.connecting)} sent ${sum((t) => t.sent)} acked ${acked} (${rate}/s) puback p50 ${Math.max(...all.map((t) => t.p50Ms), 0).toFixed(1)} ms p99 ${Math.max(...all.map((t) => t.p99Ms), 0).toFixed(1)} ms errors ${errs}`
    if (tty) process.stderr.write('\r\x1b[2K' + line)
    else if (!o.quiet && Math.round((now - started) / 1000) % 10 === 0) onStatus(line)
  }, 1000)

  // Probes: a config push and a command to a random device, timed end to end.
  let probeN = 0
  const probe = async () => {
    if (!o.api || !o.provision) return
    const d = creds[Math.floor(Math.random() * creds.length)]!
    const t0 = Date.now()
    const put = await apiCall(o, 'PUT', `/v1/devices/${d.id}/config`, { config: { probe: ++probeN, sampleEverySeconds: 10 } })
    if (put.status === 200) configSent.set(`${d.id}:${(JSON.parse(put.text) as { version: number }).version}`, t0)
    const c0 = Date.now()
    const post = await apiCall(o, 'POST', `/v1/devices/${d.id}/commands`, { name: 'ping', params: { n: probeN }, ttlSeconds: 60 })
    if (post.status !== 202) return
    const id = (JSON.parse(post.text) as { id: string }).id
    const got = await apiCall(o, 'GET', `/v1/commands/${id}?waitSeconds=30`)
    const cmd = JSON.parse(got.text) as { status: string }
    if (cmd.status === 'succeeded' || cmd.status === 'failed') { commandRtt.push(Date.now() - c0); if (cmd.status === 'failed') commandsFailed++ }
  }
  const probes: Array<Promise<void>> = []
  const probeTimer = o.probeEverySeconds > 0 ? setInterval(() => { probes.push(probe().catch(() => {})) }, o.probeEverySeconds * 1000) : undefined

  await new Promise((resolve) => setTimeout(resolve, runUntil - Date.now()))
  if (probeTimer) clearInterval(probeTimer)
  await Promise.all(probes)
  clearInterval(statusTimer)
  if (tty) process.stderr.write('\n')
  const cpuAtEnd = [...ticks.values()].reduce((a, t) => a + t.cpuSeconds, 0)
  for (const c of children) c.send({ type: 'stop' })
  await Promise.all(children.map((c) => new Promise((resolve) => c.once('exit', resolve))))
  const elapsed = (Date.now() - started) / 1000

  const merge = (key: 'pubackHistogram' | 'connectHistogram') => {
    const h = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 3_600_000_000, numberOfSignificantValueDigits: 3 })
    for (const f of finals) h.add(hdr.decodeFromCompressedBase64(f[key]))
    return h
  }
  const pub = merge('pubackHistogram'); const con = merge('connectHistogram')
  const ms = (h: ReturnType<typeof merge>, p: number) => Math.round(h.getValueAtPercentile(p) / 10) / 100
  const errors: Record<string, number> = {}
  for (const f of finals) for (const [k, v] of Object.entries(f.errors)) errors[k] = (errors[k] ?? 0) + v
  const first = Math.min(...finals.map((f) => f.firstConnectMs).filter(Boolean)); const last = Math.max(...finals.map((f) => f.lastConnectMs))
  const connected = finals.reduce((a, f) => a + f.connects, 0)
  const acked = finals.reduce((a, f) => a + f.acked, 0)
  const summary: SimSummary = {
    devices: creds.length,
    processes,
    durationSeconds: Math.round(elapsed * 10) / 10,
    connect: { connected, ratePerSecond: last > first ? Math.round(connected / ((last - first) / 1000)) : connected, p50Ms: ms(con, 50), p99Ms: ms(con, 99), maxMs: Math.round(con.maxValue / 1000) },
    messages: { sent: finals.reduce((a, f) => a + f.sent, 0), acked, ackedPerSecond: Math.round(acked / Math.max(1, o.durationSeconds + rampSeconds)), readingsPerMessage: o.readings },
    puback: { p50Ms: ms(pub, 50), p90Ms: ms(pub, 90), p99Ms: ms(pub, 99), maxMs: Math.round(pub.maxValue / 1000) },
    configRoundTrip: { count: configRtt.length, p50Ms: pct(configRtt, 50), p99Ms: pct(configRtt, 99), maxMs: Math.max(0, ...configRtt) },
    commandRoundTrip: { count: commandRtt.length, p50Ms: pct(commandRtt, 50), p99Ms: pct(commandRtt, 99), maxMs: Math.max(0, ...commandRtt), failed: commandsFailed },
    errors,
    simulatorCpuPercent: Math.round((cpuAtEnd || finals.reduce((a, f) => a + f.cpuSeconds, 0)) / elapsed * 100)
  }
  if (o.verify) summary.verify = await verify(o, finals, started)
  return summary
}

/** Every acknowledged reading must be stored exactly once (read back through the API). */
async function verify (o: SimOptions, finals: Array<Extract<FleetMessage, { type: 'final' }>>, started: number): Promise<NonNullable<SimSummary['verify']>> {
  const from = new Date(started - 60_000).toISOString()
  let acknowledged = 0; let stored = 0; let lost = 0; let duplicated = 0; let checked = 0
  const acks = Object.assign({}, ...finals.map((f) => f.acks)) as Record<string, number[]>
  const ids = Object.keys(acks)
  let next = 0
  await Promise.all(Array.from({ length: 8 }, async () => {
    while (next < ids.length) {
      const id = ids[next++]!
      const seen = new Map<number, number>()
      let cursor: string | null = null
      do {
        const r = await apiCall(o, 'GET', `/v1/devices/${id}/telemetry?from=${encodeURIComponent(from)}&limit=1000${cursor ? `&cursor=${cursor}` : ''}`)
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
  out.write(`\nfleetgate simulator — ${s.devices} devices in ${s.processes} process(es), ${s.durationSeconds} s\n`)
  out.write(`  connect       ${s.connect.connected} connects, ${s.connect.ratePerSecond}/s, latency p50 ${s.connect.p50Ms} ms p99 ${s.connect.p99Ms} ms max ${s.connect.maxMs} ms\n`)
  out.write(`  messages      sent ${s.messages.sent}, acknowledged ${s.messages.acked} (${s.messages.ackedPerSecond}/s, ${s.messages.readingsPerMessage} reading(s) each)\n`)
  out.write(`  PUBACK        p50 ${s.puback.p50Ms} ms  p90 ${s.puback.p90Ms} ms  p99 ${s.puback.p99Ms} ms  max ${s.puback.maxMs} ms\n`)
  out.write(`  config RTT    ${s.configRoundTrip.count} probes, p50 ${s.configRoundTrip.p50Ms} ms p99 ${s.configRoundTrip.p99Ms} ms max ${s.configRoundTrip.maxMs} ms\n`)
  out.write(`  command RTT   ${s.commandRoundTrip.count} probes (${s.commandRoundTrip.failed} failed), p50 ${s.commandRoundTrip.p50Ms} ms p99 ${s.commandRoundTrip.p99Ms} ms max ${s.commandRoundTrip.maxMs} ms\n`)
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

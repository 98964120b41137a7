// `npm run -s bench:events` — what live event streams cost the ingest path
// (issue 13: 10 streams watching the whole fleet may cost at most 5% of the
// stored rate). The same saturating load as `bench:ingest` (1,000 QoS 1
// devices, window 64, on a fleetgate process against its embedded
// PostgreSQL) runs with no stream and with 10 streams of every kind
// (GET /v1/events, no filter), in ABBA order (0, 10, 10, 0) so that drift
// during the run cancels out; prints stored/s of each and the ratio.
// The streams are read by other processes on the same 2 cores (operators'
// consoles would be on other machines), which therefore compete with the
// broker, PostgreSQL and the load generator: `--client node` (default) one
// Node.js process that counts events, bytes and `dropped` frames;
// `--client curl` one curl per stream writing to /dev/null (bytes only, the
// cheapest reader). Also printed: the broker's CPU per stored reading, which
// the readers' share of the machine does not change.
// Arguments: --devices (1000) --window (64) --warmup (5) --seconds (20)
// --streams (10) --client (node|curl) --out (results/bench-events.json).
// From source: node --import tsx simulator/bench-events-overhead.ts.
import { fork, spawn, type ChildProcess } from 'node:child_process'
import http from 'node:http'
import { mkdir, writeFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { setTimeout as sleep } from 'node:timers/promises'
import pg from 'pg'
import { startBenchEnvironment, type FleetgateUnderTest } from './broker-under-test.js'
import { forkFleets } from './fleet-process.js'
import type { FleetSpec } from './fleet-runner.js'
import { TELEMETRY_ONLY, type DeviceProfile } from './virtual-device.js'
import { provisionDevices } from './provisioning.js'
import { tableRows } from './committed-rows.js'
import { cpuSeconds } from './process-stats.js'

const { values: args } = parseArgs({
  options: {
    devices: { type: 'string', default: '1000' },
    window: { type: 'string', default: '64' },
    warmup: { type: 'string', default: '5' },
    seconds: { type: 'string', default: '20' },
    streams: { type: 'string', default: '10' },
    // node: one Node.js process reads every stream and counts events;
    // curl: one curl per stream writing to /dev/null (the cheapest reader: bytes only).
    client: { type: 'string', default: 'node' },
    out: { type: 'string', default: 'results/bench-events.json' },
    // Internal: the consumer process.
    consume: { type: 'string' },
    token: { type: 'string' }
  }
})

interface ConsumerReport { streams: number, events: number, bytes: number, dropped: number, connected: number }

/** The consumer process: opens N streams on `url`, counts what arrives, reports on request. */
async function consume (url: string, token: string, n: number) {
  const totals: ConsumerReport = { streams: n, events: 0, bytes: 0, dropped: 0, connected: 0 }
  const reqs: http.ClientRequest[] = []
  // Two scans per chunk, as little work as a client can do: the consumer
  // shares the machine's 2 cores with the broker, PostgreSQL and the load.
  const marker = Buffer.from('\nevent: ')
  const dropped = Buffer.from('event: dropped')
  const count = (buf: Buffer, what: Buffer) => { let c = 0; let i = 0; while ((i = buf.indexOf(what, i)) >= 0) { c++; i += what.length } return c }
  for (let i = 0; i < n; i++) {
    reqs.push(http.get(url, { headers: { authorization: `Bearer ${token}` } }, (res) => {
      if (res.statusCode === 200) totals.connected++
      else console.error(`stream ${i}: HTTP ${res.statusCode}`)
      if (totals.connected === n) process.send!('ready')
      res.on('data', (chunk: Buffer) => {
        totals.bytes += chunk.length
        // Frames are counted by their `event:` line (a frame split across chunks is rare and only undercounts).
        totals.events += count(chunk, marker)
        totals.dropped += count(chunk, dropped)
      })
    }))
  }
  process.on('message', (m) => {
    if (m === 'report') process.send!({ ...totals })
    if (m === 'stop') { for (const r of reqs) r.destroy(); process.exit(0) }
  })
}

const PROFILE: DeviceProfile = TELEMETRY_ONLY

interface Run { streams: number, storedPerSecond: number, ackedPerSecond: number, brokerCpuPercent: number, consumer?: ConsumerReport & { eventsPerSecond: number, mbPerSecond: number, cpuPercent: number } }

async function main () {
  const DEVICES = Number(args.devices); const WINDOW = Number(args.window); const WARMUP = Number(args.warmup)
  const SECONDS = Number(args.seconds); const STREAMS = Number(args.streams)
  const env = await startBenchEnvironment({ name: 'events' })
  try {
    const broker: FleetgateUnderTest = await env.fleetgate({ EVENTS_MAX_STREAMS_PER_TOKEN: String(STREAMS * 2), EVENTS_MAX_STREAMS: String(STREAMS * 2) })
    console.error(`provisioning ${DEVICES} devices …`)
    const devices = await provisionDevices(broker.api, { count: DEVICES, idPrefix: 'ev' })
    const counter = new pg.Client({ connectionString: env.databaseUrl })
    await counter.connect()
    // A stopped run (Ctrl-C, SIGTERM) stops PostgreSQL under this client: not a crash.
    counter.on('error', () => {})
    const countRows = tableRows(counter)
    const eventsUrl = `${broker.api.base}/v1/events`

    const runOnce = async (streams: number): Promise<Run> => {
      let consumer: ReturnType<typeof fork> | undefined
      let curls: ChildProcess[] = []
      const streamsOpen = async () => Number(/^fleetgate_event_streams (\d+)/m.exec(await fetch(broker.metricsUrl).then((r) => r.text()))?.[1] ?? -1)
      if (streams > 0 && args.client === 'curl') {
        curls = Array.from({ length: streams }, () => spawn('curl', ['-sN', '-o', '/dev/null', '-H', `Authorization: Bearer ${broker.token}`, eventsUrl], { stdio: 'ignore' }))
        while (await streamsOpen() < streams) await sleep(100)
      } else if (streams > 0) {
        consumer = fork(fileURLToPath(import.meta.url), ['--consume', eventsUrl, '--token', broker.token, '--streams', String(streams)], { execArgv: process.execArgv, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
        await new Promise<void>((resolve) => consumer!.once('message', () => resolve()))
      }
      const report = () => new Promise<ConsumerReport>((resolve) => { consumer!.once('message', (m) => resolve(m as ConsumerReport)); consumer!.send('report') })
      const specs: FleetSpec[] = [0, 1].map((w) => ({
        devices: devices.filter((_, i) => i % 2 === w).map((d) => ({ ...d, broker: broker.mqttUrl })),
        profile: { ...PROFILE, protocolVersion: 4 },
        load: { kind: 'window', window: WINDOW },
        rampPerSecond: 1000,
        churnPerMinute: 0,
        seed: w + 1,
        recordAcks: false
      }))
      const fleets = forkFleets(specs)
      await fleets.settled()
      await sleep(WARMUP * 1000)
      const rows0 = await countRows(); const cpu0 = await cpuSeconds(broker.pid)
      const readerPids = consumer ? [consumer.pid!] : curls.map((c) => c.pid!)
      const readersCpu = async () => (await Promise.all(readerPids.map(cpuSeconds))).reduce((a, b) => a + b, 0)
      const consumerCpu0 = await readersCpu()
      const c0 = consumer ? await report() : undefined
      fleets.measure()
      const t0 = Date.now()
      await sleep(SECONDS * 1000)
      const r = await fleets.report()
      const elapsed = (Date.now() - t0) / 1000
      const rows1 = await countRows(); const cpu1 = await cpuSeconds(broker.pid)
      const consumerCpu1 = await readersCpu()
      const c1 = consumer ? await report() : undefined
      await fleets.stop(0)
      for (const c of curls) c.kill()
      if (consumer) {
        const exited = new Promise((resolve) => consumer!.once('exit', resolve))
        consumer.send('stop')
        await exited
      }
      // The next run starts with no stream open on the broker.
      for (let i = 0; i < 100 && await streamsOpen() !== 0; i++) await sleep(100)
      const run: Run = {
        streams,
        storedPerSecond: Math.round((rows1 - rows0) / elapsed),
        ackedPerSecond: Math.round(r.acked / elapsed),
        brokerCpuPercent: Math.round((cpu1 - cpu0) / elapsed * 100),
        ...(curls.length > 0 ? { consumer: { streams, connected: streams, events: 0, bytes: 0, dropped: 0, eventsPerSecond: 0, mbPerSecond: 0, cpuPercent: Math.round((consumerCpu1 - consumerCpu0) / elapsed * 100) } } : {}),
        ...(c0 && c1 ? { consumer: { ...c1, eventsPerSecond: Math.round((c1.events - c0.events) / elapsed), mbPerSecond: Math.round((c1.bytes - c0.bytes) / elapsed / 1e5) / 10, cpuPercent: Math.round((consumerCpu1 - consumerCpu0) / elapsed * 100) } } : {})
      }
      console.error(`${streams} streams: stored ${run.storedPerSecond}/s, broker CPU ${run.brokerCpuPercent}%` + (curls.length > 0 ? `, ${streams} curl readers (events not counted) used ${run.consumer!.cpuPercent}% CPU` : run.consumer ? `, ${run.consumer.connected} streams got ${run.consumer.eventsPerSecond} events/s (${run.consumer.mbPerSecond} MB/s), dropped ${run.consumer.dropped}; the reading process used ${run.consumer.cpuPercent}% CPU` : ''))
      return run
    }

    const runs: Run[] = []
    for (const n of [0, STREAMS, STREAMS, 0]) runs.push(await runOnce(n))
    await counter.end()
    const mean = (n: number) => { const rs = runs.filter((r) => r.streams === n); return Math.round(rs.reduce((a, r) => a + r.storedPerSecond, 0) / rs.length) }
    const without = mean(0); const withStreams = mean(STREAMS)
    const ratio = Math.round(withStreams / without * 1000) / 1000
    const cost = Math.round((1 - ratio) * 1000) / 10
    // The broker's CPU per stored reading: what the streams cost even when
    // the stored rate is set by something else (a database or load
    // generator short of CPU on a shared machine).
    const cpuPerReading = (n: number) => {
      const rs = runs.filter((r) => r.streams === n)
      return Math.round(rs.reduce((a, r) => a + r.brokerCpuPercent / 100 / Math.max(1, r.storedPerSecond) * 1e6, 0) / rs.length * 10) / 10
    }
    const cpu = { without: cpuPerReading(0), with: cpuPerReading(STREAMS) }
    console.log(`\nstored/s with 0 streams: ${without}; with ${STREAMS} streams (all kinds): ${withStreams}; ratio ${ratio} (cost ${cost}%, goal ≤ 5%)`)
    console.log(`broker CPU per stored reading: ${cpu.without} µs without streams, ${cpu.with} µs with ${STREAMS} (${Math.round((cpu.with / cpu.without - 1) * 1000) / 10}%)`)
    const out = resolve(args.out!)
    await mkdir(join(out, '..'), { recursive: true })
    await writeFile(out, JSON.stringify({ date: new Date().toISOString(), params: { DEVICES, WINDOW, WARMUP, SECONDS, STREAMS }, runs, storedPerSecond: { without, with: withStreams }, brokerCpuMicrosPerReading: cpu, ratio, costPercent: cost, ok: cost <= 5 }, null, 2))
    console.log(`written ${args.out}`)
  } finally {
    await env.close()
  }
}

if (args.consume) await consume(args.consume, args.token!, Number(args.streams))
else await main()

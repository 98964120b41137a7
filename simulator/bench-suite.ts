// `npm run bench` — the benchmark suite (issue 4), not part of `npm test`.
// Every scenario compares against a baseline measured in the same run:
//   1. ingest       bench-ingest: fleetgate vs plain aedes and Mosquitto, and the
//                   raw PostgreSQL insert rate (bench-insert-paths)
//   2. connections  19,000 idle devices on one broker process: connect rate with
//                   authentication and RSS per connection, vs plain aedes and Mosquitto
//   3. fan-out      bench-config-push: one config to 10,000 connected devices
//   4. commands     command round trip p50/p99 under telemetry load vs idle
//   5. aggregate    bench-aggregate: a device's last 24 h of one-second readings
//                   aggregated per 1m/5m bucket (p50/p99) vs paging the raw readings
//                   and vs the same SQL without the (device, time) index
//   6. event streams bench-events-overhead: the ingest load (window 64) with 0 and
//                   with 10 event streams of every kind (ABBA), stored/s ratio
// and the issue-15 scenarios (bench-load.ts is their common load):
//   7. pipeline     bench-pipeline: Mosquitto + two COPY subscriber services
//                   (copy-subscriber.ts) against fleetgate: stored/s, CPU per
//                   stored row, acknowledged-but-not-stored
//   8. gateways     bench-gateway: 10 and 100 readings per message, readings
//                   stored/s against the raw COPY rate of the same rows
//   9. latency      bench-latency: PUBACK latency open loop at half and a
//                   quarter of the maximum measured in the same run
// Writes results/*.json, results/ingest.svg, the PUBACK latency charts
// results/latency-saturation.svg and results/latency-fixed-rate.svg (from the
// runs' histograms), and BENCHMARKS.md with one table per issue-15 target
// (bench-targets.ts; the cluster's from results/bench-cluster.json when
// `npm run bench:cluster` left one).
// --quick: every scenario at a tiny size, written under results/quick/ (a
// smoke run of the whole suite, not figures; the published ones are untouched).
import { execFileSync, spawn } from 'node:child_process'
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { cpus, totalmem } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { histogramPoints, svgLatency, type LatencySeries } from './bench-charts.js'
import { targetLines, type ClusterResults, type GatewayResults, type IngestResults, type IngestRow, type LatencyResults, type PipelineResults } from './bench-targets.js'
import { repoRoot, startBenchEnvironment } from './broker-under-test.js'
import { rssMb } from './process-stats.js'
import type { SimSummary } from './simulate.js'

const here = fileURLToPath(new URL('.', import.meta.url))
// The scripts next to this one, compiled (.js) or under tsx (.ts) like it.
const script = (name: string) => join(here, name + (import.meta.url.endsWith('.ts') ? '.ts' : '.js'))
const root = repoRoot
const QUICK = process.argv.includes('--quick')
// --only ingest,latency,…: run only these scenarios; the others are read from
// their last results/*.json (a re-run of a few, e.g. on a quiet machine, still
// writes the whole BENCHMARKS.md). Names: insert, ingest, config-push, events,
// aggregate, pipeline, gateway, latency, connections, commands.
const ONLY = (() => {
  const i = process.argv.indexOf('--only')
  return i >= 0 ? new Set((process.argv[i + 1] ?? '').split(',').filter(Boolean)) : undefined
})()
const wanted = (name: string) => ONLY === undefined || ONLY.has(name)
const results = join(root, 'results', ...(QUICK ? ['quick'] : []))
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? (QUICK ? 200 : 19_000))
const COMMAND_DEVICES = QUICK ? '100' : '1000'
// 30 s with a probe every 0.25 s: ~110 round trips per load, so p99 is not
// just the slowest of a handful (15 s at 0.5 s gave 29, whose p99 was their maximum).
const COMMAND_SECONDS = QUICK ? '3' : '30'
const COMMAND_PROBE_EVERY = QUICK ? '0.5' : '0.25'

function run (name: string, args: string[] = []) {
  console.error(`\n== ${name} ${args.join(' ')}`)
  execFileSync(process.execPath, [...process.execArgv, script(name), ...args], { stdio: 'inherit', cwd: root })
}

async function simulate (args: string[], report: string): Promise<SimSummary> {
  await new Promise<void>((resolve, reject) => {
    const child = spawn(process.execPath, [...process.execArgv, script('simulate'), ...args, '--quiet', '--report', report], { stdio: ['ignore', 'ignore', 'inherit'] })
    child.on('exit', (code) => code === 0 ? resolve() : reject(new Error(`simulate exited with ${code}`)))
  })
  return (JSON.parse(await readFile(report, 'utf8')) as { summary: SimSummary }).summary
}

interface ConnRow { broker: string, connected: number, connectRate: number, p50Ms: number, p99Ms: number, rssIdleMb: number, rssMaxMb: number, kbPerConnection: number }

async function connectionsScenario (name: string, pid: number, url: string, extra: string[]): Promise<ConnRow> {
  const idle = await rssMb(pid)
  let max = idle
  const sampler = setInterval(() => { void rssMb(pid).then((r) => { max = Math.max(max, r) }) }, 500)
  const s = await simulate(['--broker', url, '--devices', String(CONNECTIONS), '--ramp', '700', '--interval', '600000', '--duration', '5',
    '--source-addresses', '4', '--devices-per-process', '10000', '--probe-every', '0', ...extra], join(results, `connections-${name.replace(/\W+/g, '-')}.json`))
  clearInterval(sampler)
  return {
    broker: name,
    connected: s.connect.connected,
    connectRate: s.connect.ratePerSecond,
    p50Ms: s.connect.p50Ms,
    p99Ms: s.connect.p99Ms,
    rssIdleMb: Math.round(idle),
    rssMaxMb: Math.round(max),
    kbPerConnection: Math.round((max - idle) * 1024 / CONNECTIONS * 10) / 10
  }
}

function svgBars (title: string, bars: Array<{ label: string, value: number }>, unit: string): string {
  const w = 760; const rowH = 28; const left = 300; const h = 50 + bars.length * rowH
  const max = Math.max(...bars.map((b) => b.value), 1)
  const rows = bars.map((b, i) => {
    const y = 40 + i * rowH; const bw = (w - left - 90) * b.value / max
    const color = b.label.startsWith('fleetgate') ? '#2f7ed8' : '#9aa5b1'
    return `<text x="${left - 8}" y="${y + 17}" text-anchor="end" font-size="13">${b.label}</text>` +
      `<rect x="${left}" y="${y + 4}" width="${bw.toFixed(1)}" height="${rowH - 8}" fill="${color}"/>` +
      `<text x="${left + bw + 6}" y="${y + 17}" font-size="13">${Math.round(b.value).toLocaleString('en')} ${unit}</text>`
  }).join('\n')
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}" font-family="sans-serif">\n<rect width="100%" height="100%" fill="white"/>\n<text x="10" y="24" font-size="16" font-weight="bold">${title}</text>\n${rows}\n</svg>\n`
}

interface AggregateTiming { runs: number, p50Ms: number, p99Ms: number }
interface AggregateResults {
  fleet: number
  load: { start: number, end: number }
  scenarios: Record<string, Record<string, { buckets: number, api: AggregateTiming, sql: AggregateTiming, cpu?: AggregateTiming, plan: string[], noIndex: AggregateTiming }>>
  paging: AggregateTiming
  checks: Array<{ goal: string, value: string, ok: boolean }>
}

/** Section 5 of BENCHMARKS.md, from results/bench-aggregate.json. */
function aggregateLines (agg: AggregateResults): string[] {
  const label: Record<string, string> = { alone: 'alone in the table', inFleet: `among ${agg.fleet.toLocaleString('en')} devices (1 reading/min each)` }
  const scan = (plan: string[]) => plan.some((p) => p.includes('Index')) ? 'index (device_id, ts)' : 'sequential'
  return [
    '## 5. Telemetry aggregate (one device, a reading a second, 24 h = 86,400 readings)',
    '',
    `\`GET /v1/devices/{id}/telemetry/aggregate?field=temp&bucket=…\` over the last 24 hours, over HTTP; the same SQL timed inside PostgreSQL with its plan, the CPU time of its backend (serial plan), and without indexes. Load average ${agg.load.start} → ${agg.load.end}.`,
    '',
    '| device | bucket | API p50 | API p99 | SQL p50 | SQL CPU p50 | plan | SQL without index p50 |',
    '|---|---|---:|---:|---:|---:|---|---:|',
    ...Object.entries(agg.scenarios).flatMap(([name, byBucket]) => Object.entries(byBucket).map(([bucket, r]) =>
      `| ${label[name] ?? name} | ${bucket} (${r.buckets} buckets) | ${r.api.p50Ms} ms | ${r.api.p99Ms} ms | ${r.sql.p50Ms} ms | ${r.cpu ? `${r.cpu.p50Ms} ms` : '—'} | ${scan(r.plan)} | ${r.noIndex.p50Ms} ms |`)),
    `| baseline: the raw readings paged through \`GET /telemetry\` (87 pages) and aggregated by the client | 1m | ${agg.paging.p50Ms} ms | ${agg.paging.p99Ms} ms | — | — | — | — |`,
    '',
    ...agg.checks.map((c) => `- ${c.ok ? '✔' : '✘'} ${c.goal}: ${c.value}`),
    ''
  ]
}

interface EventsResults {
  params: { DEVICES: number, WINDOW: number, SECONDS: number, STREAMS: number }
  runs: Array<{ streams: number, storedPerSecond: number, brokerCpuPercent: number, consumer?: { eventsPerSecond: number, mbPerSecond: number, dropped: number, cpuPercent: number } }>
  brokerCpuMicrosPerReading: { without: number, with: number }
  storedPerSecond: { without: number, with: number }
  costPercent: number
  ok: boolean
}

/** Section 6 of BENCHMARKS.md, from results/bench-events.json. */
function eventsLines (ev: EventsResults): string[] {
  return [
    `## 6. Event streams (${ev.params.STREAMS} streams of every kind during the ingest load)`,
    '',
    `\`bench-events-overhead\`: ${ev.params.DEVICES.toLocaleString('en')} QoS 1 devices, window ${ev.params.WINDOW}, ${ev.params.SECONDS} s per run, in the order 0, ${ev.params.STREAMS}, ${ev.params.STREAMS}, 0 streams (\`GET /v1/events\`, no filter, read by another process).`,
    '',
    '| streams | stored/s | broker CPU | events/s sent to the streams | MB/s | dropped | reading process CPU |',
    '|---:|---:|---:|---:|---:|---:|---:|',
    ...ev.runs.map((r) => `| ${r.streams} | ${r.storedPerSecond} | ${r.brokerCpuPercent}% | ${r.consumer?.eventsPerSecond ?? '—'} | ${r.consumer?.mbPerSecond ?? '—'} | ${r.consumer?.dropped ?? '—'} | ${r.consumer ? `${r.consumer.cpuPercent}%` : '—'} |`),
    '',
    `- ${ev.ok ? '✔' : '✘'} stored/s with ${ev.params.STREAMS} streams ${ev.storedPerSecond.with} vs ${ev.storedPerSecond.without} without: cost ${ev.costPercent}% (goal ≤ 5%)`,
    `- broker CPU per stored reading: ${ev.brokerCpuMicrosPerReading.without} µs without streams, ${ev.brokerCpuMicrosPerReading.with} µs with ${ev.params.STREAMS}`,
    ''
  ]
}

async function main () {
  await mkdir(results, { recursive: true })
  // 1. ingest (+ Mosquitto), raw insert rates; 3. fan-out
  if (wanted('insert')) run('bench-insert-paths', [QUICK ? '200' : '1000', QUICK ? '5' : '40', join(results, 'bench-insert.json')])
  if (wanted('ingest')) run('bench-ingest', [...(QUICK ? ['--devices', '100', '--warmup', '1', '--seconds', '2'] : []), '--out', join(results, 'bench-ingest.json')])
  if (wanted('config-push')) run('bench-config-push', ['--sizes', QUICK ? '200' : '10000', '--bulk', '0', '--out', join(results, 'bench-config-push.json')])
  if (wanted('events')) run('bench-events-overhead', [...(QUICK ? ['--devices', '100', '--warmup', '1', '--seconds', '2'] : []), '--out', join(results, 'bench-events.json')])
  if (wanted('aggregate')) run('bench-aggregate', [...(QUICK ? ['--runs', '5', '--fleet', '10', '--paging-runs', '1'] : []), '--out', join(results, 'bench-aggregate.json')])
  // 7.–9. issue 15: the durable pipeline, gateways, latency at partial load
  const small = QUICK ? ['--devices', '100', '--warmup', '1', '--seconds', '2'] : []
  if (wanted('pipeline')) run('bench-pipeline', [...small, '--out', join(results, 'bench-pipeline.json')])
  if (wanted('gateway')) run('bench-gateway', [...small, ...(QUICK ? ['--copy-rows', '20000'] : []), '--out', join(results, 'bench-gateway.json')])
  if (wanted('latency')) run('bench-latency', [...small, ...(QUICK ? ['--saturation-windows', '16', '--fixed', '1000'] : []), '--out', join(results, 'bench-latency.json')])

  // 2. connections and 4. commands, on brokers started here
  const env = await startBenchEnvironment({ name: 'suite' })
  try {
    let conn: ConnRow[] = []
    const lastSummary = async (file: string) => (JSON.parse(await readFile(join(results, file), 'utf8')) as { summary: SimSummary }).summary
    let idleCmd: SimSummary | undefined
    let loadCmd: SimSummary | undefined
    if (wanted('connections') || wanted('commands')) {
      const broker = await env.fleetgate()
      const fg = ['--api', broker.api.base, '--token', broker.token]
      if (wanted('connections')) {
        console.error('\n== connections: fleetgate')
        conn.push(await connectionsScenario('fleetgate (authenticated)', broker.pid, broker.mqttUrl, [...fg, '--id-prefix', 'conn', '--credentials', join(await env.tempDir('credentials'), 'conn.ndjson')]))
      }
      if (wanted('commands')) {
        console.error('== commands under load')
        idleCmd = await simulate(['--broker', broker.mqttUrl, ...fg, '--devices', COMMAND_DEVICES, '--interval', '60000', '--duration', COMMAND_SECONDS, '--probe-every', COMMAND_PROBE_EVERY, '--id-prefix', 'cmdidle'], join(results, 'commands-idle.json'))
        loadCmd = await simulate(['--broker', broker.mqttUrl, ...fg, '--devices', COMMAND_DEVICES, '--interval', '200', '--duration', COMMAND_SECONDS, '--probe-every', COMMAND_PROBE_EVERY, '--id-prefix', 'cmdload'], join(results, 'commands-load.json'))
      }
      await broker.stop()
    }
    idleCmd ??= await lastSummary('commands-idle.json')
    loadCmd ??= await lastSummary('commands-load.json')
    if (wanted('connections')) {
      const plain = await env.plainAedes()
      console.error('== connections: plain aedes')
      conn.push(await connectionsScenario('plain aedes (anonymous)', plain.pid, plain.mqttUrl, ['--no-provision', '--id-prefix', 'pa']))
      await plain.stop()
      const mosquitto = await env.mosquitto()
      if (mosquitto) {
        console.error('== connections: mosquitto')
        conn.push(await connectionsScenario('mosquitto (anonymous)', mosquitto.pid, mosquitto.mqttUrl, ['--no-provision', '--id-prefix', 'mq']))
        await mosquitto.stop()
      }
      await writeFile(join(results, 'connections.json'), JSON.stringify({ date: new Date().toISOString(), connections: CONNECTIONS, rows: conn }, null, 2))
    } else {
      conn = (JSON.parse(await readFile(join(results, 'connections.json'), 'utf8')) as { rows: ConnRow[] }).rows
    }

    // ---- report ----
    const ingest = JSON.parse(await readFile(join(results, 'bench-ingest.json'), 'utf8')) as { results: Array<{ name: string, ackedPerSecond: number, storedPerSecond?: number, p50Ms: number, p99Ms: number, brokerRssMaxMb: number }>, checks: Array<{ goal: string, value: unknown, ok: boolean }> }
    const insert = JSON.parse(await readFile(join(results, 'bench-insert.json'), 'utf8')) as { rowsPerSecond: Record<string, number> }
    const fan = JSON.parse(await readFile(join(results, 'bench-config-push.json'), 'utf8')) as { results: Array<{ devices: number, parallelPuts: Record<string, number>, rollout: Record<string, number> }> }
    const agg = JSON.parse(await readFile(join(results, 'bench-aggregate.json'), 'utf8')) as AggregateResults
    const ev = JSON.parse(await readFile(join(results, 'bench-events.json'), 'utf8')) as EventsResults
    await writeFile(join(results, 'ingest.svg'), svgBars('QoS 1 messages acknowledged per second (1,000 devices, same load generator)', ingest.results.filter((r) => !r.name.startsWith('cpu:')).map((r) => ({ label: r.name, value: r.ackedPerSecond })), '/s'))
    // The issue-15 scenarios' results; the cluster's only when bench:cluster left one (run apart).
    const readJson = async <T>(file: string): Promise<T | undefined> => {
      try { return JSON.parse(await readFile(join(results, file), 'utf8')) as T } catch { return undefined }
    }
    const pipeline = await readJson<PipelineResults>('bench-pipeline.json')
    const gateway = await readJson<GatewayResults>('bench-gateway.json')
    const latency = await readJson<LatencyResults>('bench-latency.json')
    const cluster = await readJson<ClusterResults>('bench-cluster.json')
    const ingestFull = ingest as unknown as Omit<IngestResults, 'results'> & { results: Array<IngestRow & { p50Ms: number, p90Ms: number, maxMs: number }> }
    // PUBACK latency charts: saturation (closed loop) and fixed offered rates
    // apart. The issue-15 scenarios keep whole histograms; bench-ingest's runs
    // give p50, p90, p99 and the maximum.
    const fromLoad = (r: { name: string, puback: string }): LatencySeries => ({ label: r.name, points: histogramPoints(r.puback) })
    const fromIngest = (r: typeof ingestFull.results[number]): LatencySeries => ({ label: `${r.name} (ingest)`, points: [{ p: 50, ms: r.p50Ms }, { p: 90, ms: r.p90Ms }, { p: 99, ms: r.p99Ms }, { p: 100, ms: r.maxMs }] })
    const charted = ingestFull.results.filter((r) => !r.name.startsWith('cpu:') && !r.name.includes('MQTT'))
    const fixedRate = (name: string) => /\d\/s\)?$|half load/.test(name)
    await writeFile(join(results, 'latency-saturation.svg'), svgLatency('PUBACK latency at saturation (closed loop: a window of messages in flight per device)', [
      ...(latency?.saturation ?? []).map(fromLoad),
      ...(pipeline?.runs ?? []).map((r) => fromLoad(r.result)),
      ...(gateway?.runs ?? []).map((r) => fromLoad(r.result)),
      ...charted.filter((r) => !fixedRate(r.name)).map(fromIngest)
    ]))
    await writeFile(join(results, 'latency-fixed-rate.svg'), svgLatency('PUBACK latency at fixed offered rates (open loop)', [
      ...(latency?.open ?? []).map((r) => fromLoad(r.result)),
      ...charted.filter((r) => fixedRate(r.name)).map(fromIngest)
    ]))
    const bestFg = Math.max(...ingest.results.filter((r) => r.name.startsWith('fleetgate')).map((r) => r.storedPerSecond ?? 0))
    const best = (prefix: string) => Math.max(0, ...ingest.results.filter((r) => r.name.startsWith(prefix)).map((r) => r.ackedPerSecond))
    const fgConn = conn[0]!
    const lines = [
      '# Benchmarks',
      '',
      `Latest run: ${new Date().toISOString()} — \`npm run bench${ONLY ? ` -- --only ${[...ONLY].join(',')}` : ''}\` (everything on one machine: ${cpus().length} × ${cpus()[0]?.model ?? 'CPU'}, ${Math.round(totalmem() / 2 ** 30)} GiB, Node.js ${process.version}; PostgreSQL embedded with fsync on; broker, database and load generator share the cores).${ONLY ? ' The scenarios not named there are reported from their last result files (each section says what it ran).' : ''}`,
      '',
      '## 1. Ingest (QoS 1, 1,000 devices)',
      '',
      '![ingest](results/ingest.svg)',
      '',
      '| scenario | acked/s | stored/s | PUBACK p50 | p99 | broker RSS |',
      '|---|---:|---:|---:|---:|---:|',
      ...ingest.results.map((r) => `| ${r.name} | ${r.ackedPerSecond} | ${r.storedPerSecond ?? '—'} | ${r.p50Ms} ms | ${r.p99Ms} ms | ${r.brokerRssMaxMb} MB |`),
      '',
      `fleetgate / plain aedes: **${(bestFg / best('plain aedes')).toFixed(2)}**` + (best('mosquitto') > 0 ? `; fleetgate / Mosquitto: **${(bestFg / best('mosquitto')).toFixed(2)}**` : '') + ' (best stored rate vs best pass-through rate; the baselines store nothing).',
      '',
      ...ingest.checks.map((c) => `- ${c.ok ? '✔' : '✘'} ${c.goal}: ${String(c.value)}`),
      '',
      'Raw PostgreSQL insert rate for the same rows (`bench-insert-paths`, one connection, 1,000-row batches):',
      '',
      '| path | rows/s |',
      '|---|---:|',
      ...Object.entries(insert.rowsPerSecond).map(([k, v]) => `| ${k}${k === 'unnest-json' ? ' (used)' : ''} | ${v} |`),
      '',
      `fleetgate end to end / raw insert (used path): **${(bestFg / (insert.rowsPerSecond['unnest-json'] ?? 1)).toFixed(2)}**`,
      '',
      `## 2. Connections (${CONNECTIONS.toLocaleString('en')} idle devices, 700 connects/s offered, one broker process)`,
      '',
      '| broker | connected | connect rate | connect p50 | p99 | RSS idle → max | per connection |',
      '|---|---:|---:|---:|---:|---:|---:|',
      ...conn.map((c) => `| ${c.broker} | ${c.connected} | ${c.connectRate}/s | ${c.p50Ms} ms | ${c.p99Ms} ms | ${c.rssIdleMb} → ${c.rssMaxMb} MB | ${c.kbPerConnection} KiB |`),
      '',
      ...conn.slice(1).map((c) => `fleetgate / ${c.broker.split(' (')[0]}: connect rate ${(fgConn.connectRate / Math.max(1, c.connectRate)).toFixed(2)}, memory per connection ${(fgConn.kbPerConnection / Math.max(0.1, c.kbPerConnection)).toFixed(2)}.`),
      '',
      '## 3. Fan-out (one config to 10,000 connected devices)',
      '',
      '| method | p50 | p99 | max | all in sync (API) |',
      '|---|---:|---:|---:|---:|',
      ...fan.results.flatMap((r) => [`| ${r.devices} parallel PUTs | ${r.parallelPuts.p50Ms} ms | ${r.parallelPuts.p99Ms} ms | ${r.parallelPuts.maxMs} ms | — |`, `| ${r.devices} one rollout | ${r.rollout.p50Ms} ms | ${r.rollout.p99Ms} ms | ${r.rollout.maxMs} ms | ${r.rollout.allInSyncByApiMs} ms |`]),
      '',
      '## 4. Command round trip (REST POST → device result → GET ?waitSeconds)',
      '',
      '| load | probes | p50 | p99 | max |',
      '|---|---:|---:|---:|---:|',
      `| 1,000 devices idle | ${idleCmd.commandRoundTrip.count} | ${idleCmd.commandRoundTrip.p50Ms} ms | ${idleCmd.commandRoundTrip.p99Ms} ms | ${idleCmd.commandRoundTrip.maxMs} ms |`,
      `| 1,000 devices, 5 msg/s each (${loadCmd.messages.ackedPerSecond}/s telemetry) | ${loadCmd.commandRoundTrip.count} | ${loadCmd.commandRoundTrip.p50Ms} ms | ${loadCmd.commandRoundTrip.p99Ms} ms | ${loadCmd.commandRoundTrip.maxMs} ms |`,
      '',
      `under load / idle p99: ${(loadCmd.commandRoundTrip.p99Ms / Math.max(1, idleCmd.commandRoundTrip.p99Ms)).toFixed(2)}`,
      '',
      ...aggregateLines(agg),
      ...eventsLines(ev),
      ...targetLines({
        ingest: ingestFull,
        pipeline,
        gateway,
        latency,
        connections: conn,
        commands: { idleP99Ms: idleCmd.commandRoundTrip.p99Ms, loadP99Ms: loadCmd.commandRoundTrip.p99Ms, loadTelemetryPerSecond: loadCmd.messages.ackedPerSecond, devices: Number(COMMAND_DEVICES), idleProbes: idleCmd.commandRoundTrip.count, loadProbes: loadCmd.commandRoundTrip.count },
        cluster
      })
    ]
    if (QUICK) lines.splice(1, 0, '', '**Quick smoke run (`npm run bench -- --quick`): tiny sizes, not figures.**')
    await writeFile(QUICK ? join(results, 'BENCHMARKS.md') : join(root, 'BENCHMARKS.md'), lines.join('\n'))
    console.log(lines.join('\n'))
  } finally {
    await env.close()
  }
}

await main()

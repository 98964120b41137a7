// The issue-15 section of BENCHMARKS.md (bench-suite.ts): one table per
// target of the issue, each with the goal, the figure, the baseline measured
// in the same run and the ratio, read from the JSON results of the run's
// scenarios. A scenario that did not run (its result file absent) says so
// instead of a figure.
import type { PipelineRun } from './bench-pipeline.js'
import type { GatewayRun } from './bench-gateway.js'
import type { OpenLoopRun } from './bench-latency.js'
import type { LoadResult } from './bench-load.js'

export interface IngestRow {
  name: string
  ackedPerSecond: number
  storedPerSecond?: number
  p99Ms: number
  brokerRssMaxMb: number
  brokerCpuPercent: number
  /** bench-ingest: broker CPU µs per stored reading (fleetgate) or per acknowledged message (baselines). */
  brokerCpuUsPerMessage?: number
  connected?: number
  heapUsedMaxMb?: number
  externalMaxMb?: number
}
interface CpuPair { label: string, plainUs: number, fleetgateUs: number, ratio: number }
export interface IngestResults { results: IngestRow[], cpu?: { saturation: CpuPair, fixedRate: CpuPair } }
export interface PipelineResults { params: { DEVICES: number, WINDOW: number, SUBSCRIBERS: number, SECONDS: number }, runs: PipelineRun[], summary: { storedRatio?: number, cpuPerRowRatio?: number, pipelineAckedNotStoredMax: number } }
export interface GatewayResults { params: { DEVICES: number, COPY_BATCH: number, COPY_CONNECTIONS: number[] | number }, runs: GatewayRun[] }
export interface LatencyResults { params: { DEVICES: number, OPEN_WINDOW: number }, maxStoredPerSecond: number, saturation: LoadResult[], open: OpenLoopRun[] }
export interface ConnectionFigure { broker: string, kbPerConnection: number, connected: number }
export interface CommandFigures { idleP99Ms: number, loadP99Ms: number, loadTelemetryPerSecond: number, devices: number, idleProbes: number, loadProbes: number }
/** results/bench-cluster.json, read loosely: another script owns its shape. */
export interface ClusterResults { results?: Array<{ phase?: string, replicas?: number, devices?: number, connected?: number, connectsPerSecond?: number, rolloutAllReportedMs?: number, rolloutInSyncByApiMs?: number }> }

export interface TargetInputs {
  ingest?: IngestResults
  pipeline?: PipelineResults
  gateway?: GatewayResults
  latency?: LatencyResults
  connections: ConnectionFigure[]
  commands?: CommandFigures
  cluster?: ClusterResults
}

const mark = (ok: boolean | undefined) => ok === undefined ? '—' : ok ? '✔' : '✘'
const r2 = (x: number) => Math.round(x * 100) / 100
const fmt = (x: number | undefined, unit = '') => x === undefined || !Number.isFinite(x) ? '—' : `${x.toLocaleString('en')}${unit}`
const notRun = (what: string) => [`_${what} did not run in this run (its result file is absent)._`, '']

/** µs of broker CPU per stored reading (fleetgate) or acknowledged message, from the row. */
function usPerMessage (r: IngestRow): number | undefined {
  if (r.brokerCpuUsPerMessage !== undefined) return r.brokerCpuUsPerMessage
  const rate = r.storedPerSecond ?? r.ackedPerSecond
  return rate > 0 ? Math.round(r.brokerCpuPercent / 100 * 1e6 / rate * 10) / 10 : undefined
}

function target1 (ingest: IngestResults | undefined): string[] {
  const head = ['### Target 1. Broker CPU per stored reading ≤ 1.3× plain aedes per message', '']
  if (!ingest) return [...head, ...notRun('bench-ingest')]
  const table = ['| load | fleetgate µs/stored reading | plain aedes µs/message (same run) | ratio | goal | met |', '|---|---:|---:|---:|---:|:---:|']
  if (ingest.cpu) {
    for (const c of [ingest.cpu.saturation, ingest.cpu.fixedRate]) table.push(`| ${c.label} (ABBA mean) | ${c.fleetgateUs} | ${c.plainUs} | ${c.ratio} | ≤ 1.3 | ${mark(c.ratio <= 1.3)} |`)
  } else {
    // Older bench-ingest results: the saturation runs of each window, from the broker CPU % and the rates.
    for (const fg of ingest.results.filter((r) => /^fleetgate, window \d+$/.test(r.name))) {
      const w = /window (\d+)/.exec(fg.name)![1]
      const plain = ingest.results.find((r) => r.name === `plain aedes, window ${w}`)
      const a = usPerMessage(fg); const b = plain ? usPerMessage(plain) : undefined
      const ratio = a !== undefined && b ? r2(a / b) : undefined
      table.push(`| saturation, window ${w} | ${fmt(a)} | ${fmt(b)} | ${fmt(ratio)} | ≤ 1.3 | ${mark(ratio === undefined ? undefined : ratio <= 1.3)} |`)
    }
    table.push('| fixed offered rate | — | — | — | ≤ 1.3 | — |')
  }
  return [...head, 'From `bench-ingest` (the broker process\'s own CPU time from /proc over the measured window; fleetgate per stored reading, plain aedes per acknowledged message).', '', ...table, '']
}

function pipelineTable (p: PipelineResults | undefined): string[] {
  const head = ['### Against the durable pipeline (Mosquitto + COPY subscribers): keep the lead', '']
  if (!p) return [...head, ...notRun('bench-pipeline')]
  return [
    ...head,
    `\`bench-pipeline\`: ${fmt(p.params.DEVICES)} QoS 1 devices, window ${p.params.WINDOW}, ${p.params.SECONDS} s per run, the same load generator and database for both systems. The pipeline is Mosquitto plus ${p.params.SUBSCRIBERS} subscriber processes (\`simulator/copy-subscriber.ts\`: MQTT 5 shared subscription, bounded buffer, COPY batches); Mosquitto acknowledges on receipt. CPU counts the system's processes (broker, subscribers, its PostgreSQL), not the load generator. "Acknowledged, not stored": the devices' PUBACKs so far minus the rows the subscribers committed so far, sampled at each of the load processes' once-a-second reports, max over the run (it errs low: the other load process's count can be a second old); fleetgate acknowledges after commit.`,
    '',
    '| run | stored/s | CPU µs per stored row (all) | broker µs/row | acknowledged, not stored (max) | lost | PUBACK p50 | p99 |',
    '|---|---:|---:|---:|---:|---:|---:|---:|',
    ...p.runs.map((r) => `| ${r.result.name} | ${fmt(r.result.storedPerSecond)} | ${fmt(r.cpuMicrosPerRow)} | ${fmt(r.brokerCpuMicrosPerRow)} | ${fmt(r.ackedNotStoredMax)} | ${fmt(r.lost)} | ${r.result.p50Ms} ms | ${r.result.p99Ms} ms |`),
    '',
    '| measure | fleetgate / pipeline | goal | met |',
    '|---|---:|---:|:---:|',
    `| stored/s | ${fmt(p.summary.storedRatio)} | > 1 | ${mark(p.summary.storedRatio === undefined ? undefined : p.summary.storedRatio > 1)} |`,
    `| CPU per stored row | ${fmt(p.summary.cpuPerRowRatio)} | < 1 | ${mark(p.summary.cpuPerRowRatio === undefined ? undefined : p.summary.cpuPerRowRatio < 1)} |`,
    `| acknowledged, not stored (max) | 0 vs ${fmt(p.summary.pipelineAckedNotStoredMax)} | 0 | ✔ |`,
    ''
  ]
}

function target2 (g: GatewayResults | undefined): string[] {
  const head = ['### Target 2. Gateways: ≥ 100,000 readings/s at 10 readings per message, ≥ 0.5× raw COPY', '']
  if (!g) return [...head, ...notRun('bench-gateway')]
  return [
    ...head,
    `\`bench-gateway\`: ${fmt(g.params.DEVICES)} devices, QoS 1, PUBACK after commit; baseline: COPY of the same rows into the same table (${fmt(g.params.COPY_BATCH)}-row batches, the best over ${[g.params.COPY_CONNECTIONS].flat().join(' and ')} connections), measured right after each run.`,
    '',
    '| readings/message | window | readings stored/s | raw COPY rows/s (same run, by connections) | ratio | goal | met | PUBACK p50 | p99 | broker µs/reading |',
    '|---:|---:|---:|---:|---:|---|:---:|---:|---:|---:|',
    ...g.runs.map((r) => {
      const stored = r.result.storedPerSecond ?? 0
      const goal = r.readingsPerMessage === 10 ? '≥ 100,000/s and ≥ 0.5' : 'information'
      const ok = r.readingsPerMessage === 10 ? stored >= 100_000 && r.ratio >= 0.5 : undefined
      return `| ${r.readingsPerMessage} | ${r.result.window} | ${fmt(stored)} | ${fmt(r.rawCopyRowsPerSecond)}${r.rawCopyByConnections ? ` (${Object.entries(r.rawCopyByConnections).map(([n, v]) => `${n}: ${fmt(v)}`).join(', ')})` : ''} | ${r.ratio} | ${goal} | ${mark(ok)} | ${r.result.p50Ms} ms | ${r.result.p99Ms} ms | ${fmt(r.brokerCpuMicrosPerReading)} |`
    }),
    ''
  ]
}

function target3 (l: LatencyResults | undefined): string[] {
  const head = ['### Target 3. PUBACK p99 at partial load: < 100 ms at half, < 50 ms at a quarter of the measured maximum', '']
  if (!l) return [...head, ...notRun('bench-latency')]
  const sat = l.saturation.reduce((a, b) => (b.storedPerSecond ?? 0) > (a.storedPerSecond ?? 0) ? b : a)
  return [
    ...head,
    `\`bench-latency\`: ${fmt(l.params.DEVICES)} devices, QoS 1. Measured maximum in this run: **${fmt(l.maxStoredPerSecond)} stored/s** (${sat.name}: PUBACK p99 ${sat.p99Ms} ms). Open loop: sends scheduled at the offered rate whatever the acknowledgements, window ${fmt(l.params.OPEN_WINDOW)} per device (a run that sent less than 95% of the offered rate is marked).`,
    '',
    '| offered | sent/s | stored/s | p50 | p90 | p99 | p99.9 | max | goal p99 | p99 / goal | met |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---:|',
    ...l.open.map((r) => {
      const label = r.fraction === 0.5 ? `half: ${fmt(r.offeredPerSecond)}/s` : r.fraction === 0.25 ? `quarter: ${fmt(r.offeredPerSecond)}/s` : `${fmt(r.offeredPerSecond)}/s (information)`
      const ok = r.p99GoalMs === undefined ? undefined : r.result.ackedPerSecond > 0 && r.result.p99Ms < r.p99GoalMs && !r.shortOfOffered
      return `| ${label}${r.shortOfOffered ? ' (short of offered)' : ''} | ${fmt(r.result.sentPerSecond)} | ${fmt(r.result.storedPerSecond)} | ${r.result.p50Ms} ms | ${r.result.p90Ms} ms | ${r.result.p99Ms} ms | ${r.result.p999Ms} ms | ${r.result.maxMs} ms | ${r.p99GoalMs !== undefined ? `< ${r.p99GoalMs} ms` : '—'} | ${r.p99GoalMs !== undefined ? r2(r.result.p99Ms / r.p99GoalMs) : '—'} | ${mark(ok)} |`
    }),
    ''
  ]
}

function target4 (ingest: IngestResults | undefined): string[] {
  const head = ['### Target 4. Memory bounded at any window: RSS at window 256 ≤ 1.25× RSS at window 64, same stored rate', '']
  // bench-ingest's memory runs: each window on a fresh broker process.
  const fresh = (ingest?.results ?? []).filter((r) => r.name.startsWith('memory: fleetgate, window'))
  if (fresh.length === 2) {
    const [low, high] = fresh as [IngestRow, IngestRow]
    const w = (r: IngestRow) => /window (\d+)/.exec(r.name)?.[1]
    const ratio = r2(high.brokerRssMaxMb / Math.max(1, low.brokerRssMaxMb))
    const rate = r2((high.storedPerSecond ?? 0) / Math.max(1, low.storedPerSecond ?? 0))
    const row = (r: IngestRow, label: string) => `| ${label} | ${r.connected ?? '—'} | ${r.brokerRssMaxMb} MB | ${r.heapUsedMaxMb ?? '—'} MB | ${r.externalMaxMb ?? '—'} MB | ${fmt(r.storedPerSecond)} | ${r.p99Ms} ms |`
    return [
      ...head,
      'Each window on a fresh broker process (RSS does not shrink back after a run); heap and memory outside it from the broker\'s `/metrics`.',
      '',
      '| window | devices connected | broker RSS max | V8 heap used max | outside the heap max | stored/s | PUBACK p99 |',
      '|---:|---:|---:|---:|---:|---:|---:|',
      row(low, `${w(low)} (baseline)`),
      row(high, `${w(high)}`),
      '',
      `RSS ratio **${ratio}** (goal ≤ 1.25) ${mark(ratio <= 1.25)}; stored/s ratio ${rate} (goal: the same, ≥ 0.95) ${mark(rate >= 0.95)}.`,
      ''
    ]
  }
  const over = ingest?.results.find((r) => r.name.startsWith('fleetgate overload, window'))
  const overWindow = over ? Number(/window (\d+)/.exec(over.name)?.[1]) : NaN
  const deep = ingest?.results.find((r) => r.name === `fleetgate, window ${overWindow / 4}`)
  if (!over || !deep) return [...head, ...notRun('bench-ingest\'s overload run')]
  const ratio = r2(over.brokerRssMaxMb / Math.max(1, deep.brokerRssMaxMb))
  const rate = r2((over.storedPerSecond ?? 0) / Math.max(1, deep.storedPerSecond ?? 0))
  return [
    ...head,
    '| window | broker RSS max | stored/s | PUBACK p99 |',
    '|---:|---:|---:|---:|',
    `| ${overWindow / 4} (baseline) | ${deep.brokerRssMaxMb} MB | ${fmt(deep.storedPerSecond)} | ${deep.p99Ms} ms |`,
    `| ${overWindow} | ${over.brokerRssMaxMb} MB | ${fmt(over.storedPerSecond)} | ${over.p99Ms} ms |`,
    '',
    `RSS ratio **${ratio}** (goal ≤ 1.25) ${mark(ratio <= 1.25)}; stored/s ratio ${rate} (goal: the same, ≥ 0.95) ${mark(rate >= 0.95)}.`,
    ''
  ]
}

function target5 (conn: ConnectionFigure[]): string[] {
  const head = ['### Target 5. Memory per idle authenticated connection ≤ plain aedes', '']
  const fg = conn.find((c) => c.broker.startsWith('fleetgate')); const plain = conn.find((c) => c.broker.startsWith('plain aedes'))
  const mq = conn.find((c) => c.broker.startsWith('mosquitto'))
  if (!fg || !plain) return [...head, ...notRun('the connections scenario')]
  const ratio = r2(fg.kbPerConnection / Math.max(0.1, plain.kbPerConnection))
  return [
    ...head,
    '| fleetgate (authenticated) | plain aedes (anonymous, same run) | ratio | goal | met | Mosquitto (information) |',
    '|---:|---:|---:|---:|:---:|---:|',
    `| ${fg.kbPerConnection} KiB | ${plain.kbPerConnection} KiB | ${ratio} | ≤ 1 | ${mark(ratio <= 1)} | ${mq ? `${mq.kbPerConnection} KiB` : '—'} |`,
    ''
  ]
}

function target6 (c: ClusterResults | undefined): string[] {
  const head = ['### Target 6. Cluster: ≥ 2,000 connects/s across 3 replicas with 57,000 devices; rollout to all < 10 s', '']
  const rows = c?.results ?? []
  if (rows.length === 0) return [...head, '_`bench-cluster` (`npm run bench:cluster`, run apart: it needs the machine alone) has no result file in this run\'s results/ directory._', '']
  const single = rows.find((r) => r.replicas === 1)
  return [
    ...head,
    `From \`results/bench-cluster.json\` (\`npm run bench:cluster\`, run apart).${single ? ` Baseline: one process, ${fmt(single.connectsPerSecond)} connects/s.` : ''}`,
    '',
    '| phase | replicas | connected | connects/s | goal | met | rollout: all reported | goal | met |',
    '|---|---:|---:|---:|---:|:---:|---:|---:|:---:|',
    ...rows.map((r) => {
      const isTarget = r.replicas === 3
      const connOk = isTarget ? (r.connectsPerSecond ?? 0) >= 2000 && (r.connected ?? 0) >= 57_000 : undefined
      const ro = r.rolloutAllReportedMs
      const roOk = isTarget && ro !== undefined && Number.isFinite(ro) ? ro < 10_000 : undefined
      return `| ${r.phase ?? '—'} | ${r.replicas ?? '—'} | ${fmt(r.connected)} | ${fmt(r.connectsPerSecond)} | ${isTarget ? '≥ 2,000 (57,000 devices)' : '—'} | ${mark(connOk)} | ${ro !== undefined && Number.isFinite(ro) ? `${(ro / 1000).toFixed(1)} s` : '—'} | ${isTarget ? '< 10 s' : '—'} | ${mark(roOk)} |`
    }),
    ''
  ]
}

function target7 (c: CommandFigures | undefined): string[] {
  const head = ['### Target 7. Command round trip p99: < 50 ms idle, < 150 ms under load', '']
  if (!c) return [...head, ...notRun('the commands scenario')]
  // No probe answered: no figure (a p99 of 0 ms would read as met).
  const cell = (probes: number, p99: number, goal: number) => probes > 0 ? `${p99} ms | < ${goal} ms | ${r2(p99 / goal)} | ${mark(p99 < goal)}` : `— (no probe answered) | < ${goal} ms | — | ✘`
  return [
    ...head,
    '| load | probes | p99 | goal | p99 / goal | met |',
    '|---|---:|---:|---:|---:|:---:|',
    `| ${fmt(c.devices)} devices idle | ${c.idleProbes} | ${cell(c.idleProbes, c.idleP99Ms, 50)} |`,
    `| ${fmt(c.devices)} devices, 5 msg/s each (${fmt(c.loadTelemetryPerSecond)}/s telemetry) | ${c.loadProbes} | ${cell(c.loadProbes, c.loadP99Ms, 150)} |`,
    `| baseline: idle p99 in the same run | — | ${c.idleP99Ms} ms | — | under load / idle ${r2(c.loadP99Ms / Math.max(1, c.idleP99Ms))} | — |`,
    ''
  ]
}

/** The "Issue 15 targets" section. */
export function targetLines (t: TargetInputs): string[] {
  return [
    '## Issue 15 targets (one table per target, figures of this run)',
    '',
    'PUBACK latency distributions: ![saturation](results/latency-saturation.svg) ![fixed rate](results/latency-fixed-rate.svg)',
    '',
    ...pipelineTable(t.pipeline),
    ...target1(t.ingest),
    ...target2(t.gateway),
    ...target3(t.latency),
    ...target4(t.ingest),
    ...target5(t.connections),
    ...target6(t.cluster),
    ...target7(t.commands)
  ]
}

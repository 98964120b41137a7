// `npm run bench:metrics` — what the hot-path metric updates cost per
// telemetry message (issue 5: under 5% of the ingest cost). Times exactly
// the calls the broker makes per message (a labelled counter child, two
// counters, one histogram observation, the presence map touch is not a
// metric) against the same loop without them, then relates the difference
// to the broker's CPU per message measured by `npm run bench:ingest`
// (results/bench-ingest.json, same machine). A benchmark of an internal
// path: the one kind of simulator/ script that may import broker/.
import { readFile } from 'node:fs/promises'
import { createMetrics } from '../broker/metrics.js'

const N = 2_000_000
const metrics = createMetrics({ collectDefault: false })
const telemetry1 = metrics.publishes.labels('telemetry', '1')
let sink = 0

function loop (withMetrics: boolean): number {
  const t0 = process.hrtime.bigint()
  for (let i = 0; i < N; i++) {
    sink += i & 7 // stand-in for the work a message does
    if (withMetrics) {
      telemetry1.inc()
      metrics.bytesIn.inc(160)
      metrics.readingsAccepted.inc(1)
      metrics.pubackLatency.observe((i % 100) / 1000)
    }
  }
  return Number(process.hrtime.bigint() - t0) / N
}

for (let r = 0; r < 3; r++) { loop(true); loop(false) } // warm up the JIT
const samples = Array.from({ length: 5 }, () => loop(true) - loop(false)).sort((a, b) => a - b)
const nsPerMessage = samples[2]!
let brokerNsPerMessage: number | undefined
try {
  const ingest = JSON.parse(await readFile('results/bench-ingest.json', 'utf8')) as { results: Array<{ name: string, ackedPerSecond: number, brokerCpuPercent: number }> }
  const sat = ingest.results.find((r) => r.name.startsWith('fleetgate, window 64')) ?? ingest.results.find((r) => r.name.startsWith('fleetgate'))
  if (sat) brokerNsPerMessage = sat.brokerCpuPercent / 100 / sat.ackedPerSecond * 1e9
} catch {}
console.log(`metric updates per telemetry message: ${nsPerMessage.toFixed(0)} ns (median of 5 × ${N.toLocaleString()})`)
if (brokerNsPerMessage) {
  console.log(`broker CPU per message (bench:ingest): ${(brokerNsPerMessage / 1000).toFixed(1)} µs → metrics overhead ${(nsPerMessage / brokerNsPerMessage * 100).toFixed(2)}% (goal < 5%)`)
} else console.log('run `npm run bench:ingest` first to relate this to the broker\'s cost per message')
void sink

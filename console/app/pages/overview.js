// Fleet overview, live: GET /v1/overview every 3 s; the last 15 minutes of
// samples stay in memory (bounded) for the trend charts.
import { html, useState, useRef } from '../vendor.js'
import { get } from '../api.js'
import { Chart, ErrorBox, Badge, num, useInterval, Empty } from '../ui.js'

const POLL_MS = 3000
const KEEP_S = 15 * 60

function Stat ({ label, value, sub, kind }) {
  return html`<div class=${'stat ' + (kind ?? '')}><div class="stat-label">${label}</div><div class="stat-value">${value}</div>${sub ? html`<div class="stat-sub">${sub}</div>` : null}</div>`
}

const Ready = ({ ok, label, title }) => html`<${Badge} kind=${ok === null ? 'muted' : ok ? 'ok' : 'bad'} title=${title}>${label}: ${ok === null ? 'not used' : ok ? 'ok' : 'down'}<//>`

export function OverviewPage () {
  const [data, setData] = useState(null)
  const [error, setError] = useState(null)
  // [t, online, stored/s, connects/s, p99 ms, queue rows]; a ring trimmed to 15 min.
  const points = useRef([[], [], [], [], [], []])
  const [, setTick] = useState(0)

  useInterval(async () => {
    try {
      const o = await get('/v1/overview')
      const p = points.current
      const t = Date.now() / 1000
      const row = [t, o.devices.online, o.rates.telemetryStoredPerSecond, o.rates.connectsPerSecond, o.pubackP99Ms, o.ingest.queueRows]
      row.forEach((v, i) => p[i].push(v))
      while (p[0].length && p[0][0] < t - KEEP_S) p.forEach((a) => a.shift())
      // New arrays for the charts (uPlot keeps references to what it is given).
      points.current = p.map((a) => a.slice())
      setData(o)
      setError(null)
      setTick((n) => n + 1)
    } catch (err) {
      setError(err)
    }
  }, POLL_MS)

  const p = points.current
  const series = (i) => [p[0], p[i]]
  if (!data && error) return html`<h1>Fleet overview</h1><${ErrorBox} error=${error} what="the overview" />`
  if (!data) return html`<h1>Fleet overview</h1><p class="muted">Loading…</p>`
  const d = data.devices
  const reasons = Object.entries(data.deadLetters.byReason).sort((a, b) => b[1] - a[1])
  const r = data.readiness
  // While the broker does not answer, the last numbers stay, dimmed, and readiness says so.
  const stale = error && error.status === 0
  return html`
    <div class="page-head"><h1>Fleet overview</h1><span class="muted small">live · every ${POLL_MS / 1000} s · rates of this replica over ${num(data.windowSeconds, 0)} s</span></div>
    <${ErrorBox} error=${error} what="the overview" />
    <section aria-labelledby="h-ready" class="readiness">
      <h2 id="h-ready" class="sr-only">Readiness</h2>
      ${stale
        ? html`<${Badge} kind="bad">broker unreachable<//><span class="muted small">last answer ${new Date(data.at).toLocaleTimeString()}; the numbers below are from then</span>`
        : html`<${Badge} kind=${r.ready ? 'ok' : 'bad'} title=${r.reason ?? 'ready'}>${r.ready ? 'ready' : 'not ready'}<//>
          <${Ready} ok=${r.database} label="PostgreSQL" />
          <${Ready} ok=${r.redis} label="Redis" title=${r.redis === null ? 'single replica: no Redis configured' : ''} />
          ${r.reason ? html`<span class="muted">${r.reason}</span>` : null}`}
    </section>
    <div class=${stale ? 'stale' : ''}>
    <section class="stats" aria-label="Devices">
      <${Stat} label="Devices" value=${num(d.total, 0)} sub=${`${num(d.disabled, 0)} disabled`} />
      <${Stat} label="Online" value=${num(d.online, 0)} kind="ok" />
      <${Stat} label="Offline" value=${num(d.offline, 0)} />
      <${Stat} label="Config in sync" value=${num(d.config.inSync, 0)} />
      <${Stat} label="Config pending" value=${num(d.config.pending, 0)} kind=${d.config.pending ? 'warn' : ''} />
      <${Stat} label="Config failed" value=${num(d.config.failed, 0)} kind=${d.config.failed ? 'bad' : ''} />
    </section>
    <section class="stats" aria-label="Traffic">
      <${Stat} label="Connects/s" value=${num(data.rates.connectsPerSecond)} />
      <${Stat} label="Telemetry stored/s" value=${num(data.rates.telemetryStoredPerSecond)} />
      <${Stat} label="PUBACK p99" value=${data.pubackP99Ms === null ? '—' : num(data.pubackP99Ms) + ' ms'} sub="received → committed" />
      <${Stat} label="Ingest queue" value=${num(data.ingest.queueRows, 0)} sub=${`of ${num(data.ingest.queueCapacity, 0)} rows`} />
      <${Stat} label="Backpressure" value=${num(data.ingest.backpressureSeconds) + ' s'} sub="held since start" />
    </section>
    <section class="grid2" aria-label="Trends, last 15 minutes">
      <div class="panel"><h2>Online devices</h2><${Chart} series=${['online']} data=${series(1)} label="Online devices, last 15 minutes" /></div>
      <div class="panel"><h2>Telemetry stored/s</h2><${Chart} series=${['stored/s']} data=${series(2)} label="Telemetry stored per second, last 15 minutes" /></div>
      <div class="panel"><h2>Connects/s</h2><${Chart} series=${['connects/s']} data=${series(3)} label="Connects per second, last 15 minutes" /></div>
      <div class="panel"><h2>PUBACK p99 (ms)</h2><${Chart} series=${['p99 ms']} data=${series(4)} label="PUBACK p99 latency, last 15 minutes" /></div>
    </section>
    <section class="panel" aria-labelledby="h-dl">
      <h2 id="h-dl">Dead letters by reason <span class="muted small">last ${data.deadLetters.windowHours} h</span></h2>
      ${reasons.length === 0
        ? html`<${Empty}>No dead letters in the last ${data.deadLetters.windowHours} h.<//>`
        : html`<table class="compact"><thead><tr><th scope="col">reason</th><th scope="col" class="r">count</th></tr></thead>
          <tbody>${reasons.map(([k, n]) => html`<tr><td><code>${k}</code></td><td class="r">${num(n, 0)}</td></tr>`)}</tbody></table>`}
    </section>
    </div>`
}

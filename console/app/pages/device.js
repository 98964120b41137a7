// One device: presence, live telemetry (event stream + aggregate API), config
// (desired vs reported, diff, history, rollback, a validating JSON editor),
// commands with their state timeline, dead letters, and the device actions.
import { html, useState, useEffect, useRef, useMemo } from '../vendor.js'
import { get, post, put, patch, del, qs, enc, ApiError } from '../api.js'
import { Trunc, Presence, ConfigBadge, Labels, ErrorBox, Empty, Notice, Badge, Dialog, Confirm, Secret, Chart, useLoad, ago, fmtTime, can, parseJsonObject, num } from '../ui.js'

/** The last non-null value of a series. */
function lastOf (ys) {
  for (let i = (ys?.length ?? 0) - 1; i >= 0; i--) if (ys[i] !== null && ys[i] !== undefined) return ys[i]
  return null
}

const WINDOWS = { '5m': [5 * 60, '10s', '5 min'], '1h': [3600, '1m', '1 h'], '24h': [86400, '15m', '24 h'] }
const MAX_FIELDS = 6
const MAX_POINTS = 4000
const LATEST = 15

/** Numeric leaves of a reading as dot paths (env.temp), `ts` left out. */
function numericFields (reading, prefix = '', out = {}) {
  if (typeof reading !== 'object' || reading === null || Array.isArray(reading)) return out
  for (const [k, v] of Object.entries(reading)) {
    const path = prefix ? `${prefix}.${k}` : k
    if (!prefix && k === 'ts') continue
    if (typeof v === 'number' && Number.isFinite(v)) out[path] = v
    else if (typeof v === 'object' && v !== null && !Array.isArray(v) && prefix.split('.').length < 4) numericFields(v, path, out)
  }
  return out
}

/**
 * The device's live event stream (GET /v1/events, same-origin: the session
 * cookie authenticates it). Reconnects itself after a failed connect.
 */
function useDeviceEvents (id, handlers) {
  const h = useRef(handlers)
  h.current = handlers
  const [state, setState] = useState('connecting')
  useEffect(() => {
    let es
    let retry
    let closed = false
    const open = () => {
      es = new EventSource('/v1/events' + qs({ kinds: 'telemetry,presence,config,command,device,dead_letter', deviceIds: id }))
      es.onopen = () => setState('live')
      es.onerror = () => {
        if (es.readyState === EventSource.CLOSED) {
          setState('unavailable')
          if (!closed) retry = setTimeout(open, 10_000)
        } else setState('reconnecting')
      }
      for (const kind of ['telemetry', 'presence', 'config', 'command', 'device', 'dead_letter', 'dropped']) {
        es.addEventListener(kind, (e) => {
          let ev
          try { ev = JSON.parse(e.data) } catch { return }
          h.current[kind]?.(ev)
        })
      }
    }
    open()
    return () => { closed = true; clearTimeout(retry); es?.close() }
  }, [id])
  return state
}

function Telemetry ({ id, live }) {
  const [win, setWin] = useState('5m')
  const [fields, setFields] = useState([])
  const [latest, setLatest] = useState([])
  const [notice, setNotice] = useState(null)
  const [error, setError] = useState(null)
  // Points by time: rows [t seconds, {field: value}], kept sorted and bounded.
  const rows = useRef([])
  const [data, setData] = useState([[]])
  const dirty = useRef(false)

  const rebuild = (fs) => {
    const r = rows.current
    setData([r.map((x) => x[0]), ...fs.map((f) => r.map((x) => x[1][f] ?? null))])
  }

  // Initial load: the latest raw readings (field discovery, latest table), then the window.
  const [loaded, setLoaded] = useState(false)
  useEffect(() => {
    let live = true
    rows.current = []
    setLoaded(false)
    ;(async () => {
      try {
        const now = Date.now()
        const recent = await get(`/v1/devices/${enc(id)}/telemetry` + qs({ from: new Date(now - WINDOWS[win][0] * 1000).toISOString(), limit: 1000 }))
        if (!live) return
        const items = recent.items
        setLatest(items.slice(-LATEST).reverse())
        const seen = {}
        for (const it of items.slice(-200)) Object.assign(seen, numericFields(it.payload))
        const fs = Object.keys(seen).slice(0, MAX_FIELDS)
        setFields(fs)
        const [seconds, bucket] = WINDOWS[win]
        let points = []
        let note = null
        try {
          const from = new Date(now - seconds * 1000).toISOString()
          const to = new Date(now + 1000).toISOString()
          const series = await Promise.all(fs.map((f) => get(`/v1/devices/${enc(id)}/telemetry/aggregate` + qs({ field: f, bucket, from, to }))))
          const byT = new Map()
          series.forEach((s, i) => s.items.forEach((b) => {
            const t = new Date(b.start).getTime() / 1000
            if (!byT.has(t)) byT.set(t, {})
            byT.get(t)[fs[i]] = b.avg
          }))
          points = [...byT.entries()]
          note = `${WINDOWS[win][2]}: average per ${bucket} bucket, then each reading live as it is stored.`
        } catch (err) {
          if (!(err instanceof ApiError && err.status === 404)) throw err
          // No aggregate API on this broker: the raw readings of the window's first page.
          points = items.map((it) => [new Date(it.ts).getTime() / 1000, numericFields(it.payload)])
          note = 'This broker has no aggregate API: raw readings are shown.'
        }
        if (!live) return
        points.sort((a, b) => a[0] - b[0])
        // Readings that arrived live while this loaded stay (those after the last loaded point).
        const lastT = points.length ? points[points.length - 1][0] : -Infinity
        rows.current = [...points, ...rows.current.filter((x) => x[0] > lastT)].slice(-MAX_POINTS)
        setLoaded(true)
        setNotice(note)
        setError(null)
        rebuild(fs)
      } catch (err) { if (live) setError(err) }
    })()
    return () => { live = false }
  }, [id, win])

  // Live readings: appended to the chart (redrawn once a second at most) and the latest table.
  live.current.telemetry = (ev) => {
    const reading = ev.data?.reading
    const ts = ev.data?.ts ?? ev.at
    if (!reading || !ts) return
    const t = new Date(ts).getTime() / 1000
    const vals = numericFields(reading)
    const r = rows.current
    if (r.length === 0 || r[r.length - 1][0] <= t) r.push([t, vals])
    else r.splice(r.findIndex((x) => x[0] > t), 0, [t, vals])
    const oldest = Date.now() / 1000 - WINDOWS[win][0]
    while (r.length && (r[0][0] < oldest || r.length > MAX_POINTS)) r.shift()
    dirty.current = true
    setLatest((l) => [{ ts, payload: reading }, ...l].slice(0, LATEST))
    if (fields.length === 0 && Object.keys(vals).length) setFields(Object.keys(vals).slice(0, MAX_FIELDS))
  }
  useEffect(() => {
    const t = setInterval(() => { if (dirty.current) { dirty.current = false; rebuild(fields) } }, 1000)
    return () => clearInterval(t)
  }, [fields])

  return html`<section class="panel" aria-labelledby="h-telemetry">
    <div class="panel-head"><h2 id="h-telemetry">Telemetry</h2>
      <div class="segmented" role="group" aria-label="Window">${Object.entries(WINDOWS).map(([k, [, , label]]) =>
        html`<button type="button" aria-pressed=${win === k} onClick=${() => setWin(k)}>${label}</button>`)}</div>
    </div>
    <${ErrorBox} error=${error} what="telemetry" />
    ${notice ? html`<p class="muted small">${notice}</p>` : null}
    ${fields.length === 0
      ? html`<${Empty}>No numeric readings in this window yet. The chart fills in as the device publishes.<//>`
      : html`<div class="charts">${fields.map((f, i) => html`<div class="field-chart" key=${f}>
          <h3 class="field-name mono">${f} <span class="field-last">${num(lastOf(data[i + 1]))}</span></h3>
          <${Chart} series=${[f]} data=${[data[0], data[i + 1] ?? []]} height=${140} loaded=${loaded} label=${`${f} of ${id}`} />
        </div>`)}</div>`}
    <h3>Latest readings</h3>
    ${latest.length === 0
      ? html`<${Empty}>No readings yet.<//>`
      : html`<div class="table-wrap"><table class="compact readings"><thead><tr><th scope="col">time</th><th scope="col">reading</th></tr></thead>
        <tbody>${latest.map((r) => html`<tr><td class="nowrap">${fmtTime(r.ts)}</td><td><${Trunc} text=${JSON.stringify(r.payload)} cls="mono" /></td></tr>`)}</tbody></table></div>`}
  </section>`
}

/** path → JSON text of every leaf, for the desired/reported diff. */
function leaves (v, prefix = '', out = new Map()) {
  if (typeof v === 'object' && v !== null && !Array.isArray(v) && Object.keys(v).length > 0) {
    for (const [k, x] of Object.entries(v)) leaves(x, prefix ? `${prefix}.${k}` : k, out)
  } else if (prefix) out.set(prefix, JSON.stringify(v))
  return out
}

function ConfigDiff ({ desired, reported }) {
  const a = leaves(reported ?? {})
  const b = leaves(desired ?? {})
  const keys = [...new Set([...a.keys(), ...b.keys()])].sort()
  const rows = keys.filter((k) => a.get(k) !== b.get(k))
  if (rows.length === 0) return html`<p class="muted small">Reported and desired configs are the same.</p>`
  return html`<table class="compact diff"><caption>Differences (reported → desired)</caption>
    <thead><tr><th scope="col">key</th><th scope="col">reported</th><th scope="col">desired</th></tr></thead>
    <tbody>${rows.map((k) => html`<tr class=${!a.has(k) ? 'added' : !b.has(k) ? 'removed' : 'changed'}>
      <td class="mono">${k}</td><td class="mono old">${a.get(k) ?? '—'}</td><td class="mono new">${b.get(k) ?? '—'}</td></tr>`)}</tbody></table>`
}

function ConfigPanel ({ id, writable, live }) {
  const cfg = useLoad(() => get(`/v1/devices/${enc(id)}/config`), [id])
  const hist = useLoad(() => get(`/v1/devices/${enc(id)}/config/history?limit=20`), [id])
  const [text, setText] = useState(null)
  const [result, setResult] = useState(null)
  const [error, setError] = useState(null)
  const [confirm, setConfirm] = useState(null)
  live.current.config = () => { cfg.reload(); hist.reload() }
  const c = cfg.data
  const desired = c?.desired
  const editorText = text ?? JSON.stringify(desired?.config ?? {}, null, 2)
  const parsed = useMemo(() => parseJsonObject(editorText), [editorText])
  const state = c ? (c.state ?? (c.desired ? (c.inSync ? 'in_sync' : 'pending') : 'none')) : undefined
  const save = async (e) => {
    e.preventDefault()
    if (parsed.error) return
    setError(null)
    try {
      const r = await put(`/v1/devices/${enc(id)}/config`, { config: parsed.value, ifVersion: desired?.version ?? 0 })
      setResult(`Version ${r.version} set; ${r.delivered ? 'delivered to the connected device' : 'stored: the device gets it when it next connects'}.`)
      setText(null)
      cfg.reload(); hist.reload()
    } catch (err) {
      setError(err)
      if (err.code === 'version_conflict') cfg.reload()
    }
  }
  const rollback = (v) => setConfirm(html`<${Confirm} title=${`Roll back to version ${v}?`} message=${`The config of version ${v} becomes the desired config again, as a new version, and is pushed to the device.`}
    confirmLabel="Roll back" onClose=${() => setConfirm(null)}
    onConfirm=${async () => {
      const r = await post(`/v1/devices/${enc(id)}/config/rollback`, { toVersion: v })
      setResult(`Rolled back: version ${r.version} (= ${v}) ${r.delivered ? 'delivered' : 'stored'}.`)
      setText(null)
      cfg.reload(); hist.reload()
    }} />`)
  return html`<section class="panel" aria-labelledby="h-config">
    <div class="panel-head"><h2 id="h-config">Config</h2>${state ? html`<span data-testid="config-state"><${ConfigBadge} state=${state} /></span>` : null}</div>
    <${ErrorBox} error=${cfg.error} what="config" onRetry=${cfg.reload} />
    ${c ? html`<div class="cols2">
      <div><h3>Desired ${desired ? html`<span class="muted">v${desired.version}</span>` : null}</h3>
        ${desired ? html`<pre class="json">${JSON.stringify(desired.config, null, 2)}</pre><p class="muted small">set ${ago(desired.updatedAt)}</p>` : html`<${Empty}>No desired config.<//>`}</div>
      <div><h3>Reported ${c.reported ? html`<span class="muted">v${c.reported.version}</span>` : null}</h3>
        ${c.reported
          ? html`${c.reported.status === 'failed' ? html`<p class="error" role="alert">The device could not apply v${c.reported.version}: ${c.reported.error ?? 'no reason given'}</p>` : null}
            ${c.reported.config !== null && c.reported.config !== undefined ? html`<pre class="json">${JSON.stringify(c.reported.config, null, 2)}</pre>` : null}<p class="muted small">reported ${ago(c.reported.updatedAt)}</p>`
          : html`<${Empty}>Nothing reported yet.<//>`}</div>
    </div>
    ${desired && c.reported ? html`<${ConfigDiff} desired=${desired.config} reported=${c.reported.config} />` : null}` : null}
    ${result ? html`<${Notice}>${result}<//>` : null}
    ${writable ? html`<form class="stack editor" onSubmit=${save}>
      <label for="config-editor">Edit desired config (JSON)</label>
      <textarea id="config-editor" class="mono" rows="8" spellcheck="false" aria-invalid=${!!parsed.error} aria-describedby="config-editor-status"
        value=${editorText} onInput=${(e) => setText(e.target.value)}></textarea>
      <p id="config-editor-status" class=${parsed.error ? 'error small' : 'muted small'}>${parsed.error ?? 'Valid JSON object.'}</p>
      <${ErrorBox} error=${error} />
      <div class="actions"><button type="button" onClick=${() => setText(null)} disabled=${text === null}>Reset</button><button type="submit" class="primary" disabled=${!!parsed.error || text === null}>Save and push</button></div>
    </form>` : null}
    <h3>Version history</h3>
    <${ErrorBox} error=${hist.error} what="config history" />
    ${hist.data && hist.data.items.length === 0 ? html`<${Empty}>No versions yet.<//>` : null}
    ${hist.data && hist.data.items.length > 0 ? html`<div class="table-wrap"><table class="compact history"><thead><tr><th scope="col">version</th><th scope="col">set</th><th scope="col">by</th><th scope="col">source</th><th scope="col">config</th>${writable ? html`<th scope="col"><span class="sr-only">actions</span></th>` : null}</tr></thead>
      <tbody>${hist.data.items.map((v) => html`<tr>
        <td>v${v.version}</td><td class="nowrap" title=${fmtTime(v.setAt)}>${ago(v.setAt)}</td><td><${Trunc} text=${v.setBy?.name ?? '—'} /></td><td>${v.source}</td>
        <td><${Trunc} text=${JSON.stringify(v.config)} cls="mono" /></td>
        ${writable ? html`<td>${v.version !== desired?.version ? html`<button type="button" class="small" aria-label=${`Roll back to v${v.version}`} onClick=${() => rollback(v.version)}>Roll back</button>` : html`<span class="muted small">current</span>`}</td>` : null}
      </tr>`)}</tbody></table></div>` : null}
    ${confirm}
  </section>`
}

const STATUS_KIND = { queued: 'muted', sent: 'warn', succeeded: 'ok', failed: 'bad', expired: 'off', cancelled: 'off' }

function CommandsPanel ({ id, writable, live }) {
  const list = useLoad(() => get(`/v1/devices/${enc(id)}/commands?limit=100`), [id])
  const [form, setForm] = useState({ name: '', params: '', ttl: '3600' })
  const [error, setError] = useState(null)
  live.current.command = () => list.reload()
  const params = form.params.trim() ? parseJsonObject(form.params) : { value: undefined }
  const send = async (e) => {
    e.preventDefault()
    if (params.error) return
    setError(null)
    try {
      await post(`/v1/devices/${enc(id)}/commands`, { name: form.name.trim(), ...(params.value ? { params: params.value } : {}), ttlSeconds: Number(form.ttl) })
      setForm({ ...form, params: '' })
      list.reload()
    } catch (err) { setError(err) }
  }
  const cancel = async (cid) => {
    try { await post(`/v1/commands/${enc(cid)}/cancel`); list.reload() } catch (err) { setError(err) }
  }
  const items = (list.data?.items ?? []).slice().reverse().slice(0, 20)
  return html`<section class="panel" aria-labelledby="h-commands">
    <h2 id="h-commands">Commands</h2>
    ${writable ? html`<form class="inline-form" onSubmit=${send}>
      <label>Command<input name="command" required maxlength="100" value=${form.name} onInput=${(e) => setForm({ ...form, name: e.target.value })} placeholder="reboot" /></label>
      <label class="grow">Params (JSON object, optional)<input name="params" class="mono" value=${form.params} aria-invalid=${!!params.error} onInput=${(e) => setForm({ ...form, params: e.target.value })} placeholder='{"delaySeconds": 5}' /></label>
      <label>TTL (s)<input name="ttl" type="number" min="1" max="2592000" value=${form.ttl} onInput=${(e) => setForm({ ...form, ttl: e.target.value })} /></label>
      <button type="submit" class="primary" disabled=${!form.name.trim() || !!params.error}>Send</button>
    </form>
    ${params.error ? html`<p class="error small">${params.error}</p>` : null}` : null}
    <${ErrorBox} error=${error ?? list.error} what="commands" />
    ${list.data && items.length === 0 ? html`<${Empty}>No commands sent to this device yet.<//>` : null}
    <ol class="commands">${items.map((c) => html`<li class="command" data-status=${c.status}>
      <div class="command-head"><strong class="mono">${c.name}</strong> <${Badge} kind=${STATUS_KIND[c.status] ?? 'muted'}>${c.status}<//>
        ${writable && (c.status === 'queued' || c.status === 'sent') ? html`<button type="button" class="small" onClick=${() => cancel(c.id)}>Cancel</button>` : null}
        <span class="muted small mono" title=${c.id}>${c.id.slice(0, 8)}</span></div>
      <ol class="timeline" aria-label="State timeline">
        <li>queued <time>${fmtTime(c.createdAt)}</time></li>
        ${c.sentAt ? html`<li>sent <time>${fmtTime(c.sentAt)}</time></li>` : null}
        ${c.completedAt ? html`<li>${c.status} <time>${fmtTime(c.completedAt)}</time></li>` : html`<li class="muted">expires <time>${fmtTime(c.expiresAt)}</time></li>`}
      </ol>
      ${c.params && Object.keys(c.params).length ? html`<div class="small">params <${Trunc} text=${JSON.stringify(c.params)} cls="mono" /></div>` : null}
      ${c.result !== null && c.result !== undefined ? html`<div class="small">result <${Trunc} text=${JSON.stringify(c.result)} cls="mono" /></div>` : null}
    </li>`)}</ol>
  </section>`
}

function b64preview (s) {
  try { const t = atob(s); return /^[\x20-\x7e\s]*$/.test(t) ? t : `${t.length} bytes (binary)` } catch { return s }
}

function DeadLetters ({ id, live }) {
  const dl = useLoad(() => get('/v1/dead-letters' + qs({ deviceId: id, limit: 20 })), [id])
  live.current.dead_letter = () => dl.reload()
  return html`<section class="panel" aria-labelledby="h-dl">
    <h2 id="h-dl">Dead letters</h2>
    <${ErrorBox} error=${dl.error} what="dead letters" />
    ${dl.data && dl.data.items.length === 0 ? html`<${Empty}>No dead letters from this device.<//>` : null}
    ${dl.data && dl.data.items.length > 0 ? html`<div class="table-wrap"><table class="compact"><thead><tr><th scope="col">received</th><th scope="col">reason</th><th scope="col">topic</th><th scope="col">payload</th></tr></thead>
      <tbody>${dl.data.items.map((d) => html`<tr><td class="nowrap">${fmtTime(d.receivedAt)}</td><td><code title=${d.detail ?? ''}>${d.reason}</code></td><td><${Trunc} text=${d.topic} cls="mono" /></td><td><${Trunc} text=${b64preview(d.payloadBase64)} cls="mono" /></td></tr>`)}</tbody></table></div>` : null}
  </section>`
}

export function DevicePage ({ id, session }) {
  const dev = useLoad(() => get(`/v1/devices/${enc(id)}`), [id])
  const [dialog, setDialog] = useState(null)
  const [presenceLog, setPresenceLog] = useState([])
  const [error, setError] = useState(null)
  const writable = can(session, 'write')
  // Each panel puts its handlers here; the one event stream feeds them all.
  const live = useRef({})
  live.current.presence = (ev) => { setPresenceLog((l) => [{ at: ev.at, type: ev.type, reason: ev.data?.reason }, ...l].slice(0, 20)); dev.reload() }
  live.current.device = (ev) => { if (ev.type === 'deleted') location.hash = '#/devices'; else dev.reload() }
  const handlers = new Proxy({}, { get: (_t, k) => (ev) => live.current[k]?.(ev) })
  const stream = useDeviceEvents(id, handlers)
  const d = dev.data

  const rotate = () => setDialog(html`<${Confirm} title="Rotate the secret?" message="A new secret is generated; the old one stops working for new connections at once." confirmLabel="Rotate secret" danger onClose=${() => setDialog(null)}
    onConfirm=${async () => {
      const r = await post(`/v1/devices/${enc(id)}/secret`)
      setTimeout(() => setDialog(html`<${Dialog} title="New secret" onClose=${() => setDialog(null)}><${Secret} label="Device secret" value=${r.secret} /><div class="actions"><button type="button" class="primary" onClick=${() => setDialog(null)}>Done</button></div><//>`))
    }} />`)
  const toggle = async () => {
    try { await patch(`/v1/devices/${enc(id)}`, { disabled: !d.disabled }); dev.reload() } catch (err) { setError(err) }
  }
  const remove = () => setDialog(html`<${Confirm} title="Delete this device?" message=${`Delete ${id}? Its connection is closed; its config and commands are removed. This cannot be undone.`} confirmLabel="Delete" danger onClose=${() => setDialog(null)}
    onConfirm=${async () => { await del(`/v1/devices/${enc(id)}`); location.hash = '#/devices' }} />`)

  if (dev.error) {
    return html`<p><a href="#/devices">← Devices</a></p><h1><${Trunc} text=${id} cls="mono" /></h1>
      ${dev.error.status === 404 ? html`<${Empty}>No device with this id (it may have been deleted).<//>` : html`<${ErrorBox} error=${dev.error} onRetry=${dev.reload} />`}`
  }
  return html`
    <p class="crumbs"><a href="#/devices">← Devices</a></p>
    <div class="page-head">
      <h1 class="device-title"><${Trunc} text=${id} cls="mono" /></h1>
      ${d ? html`<${Presence} device=${d} />` : null}
      <span class=${'stream stream-' + stream} title="live event stream">${stream === 'live' ? '● live' : stream === 'unavailable' ? 'live updates unavailable' : stream}</span>
      ${writable && d ? html`<div class="head-actions">
        <button type="button" onClick=${rotate}>Rotate secret</button>
        <button type="button" onClick=${toggle}>${d.disabled ? 'Enable' : 'Disable'}</button>
        <button type="button" class="danger" onClick=${remove}>Delete</button>
      </div>` : null}
    </div>
    <${ErrorBox} error=${error} />
    ${d ? html`<section class="panel facts" aria-label="Device">
      <dl>
        <div><dt>Name</dt><dd><${Trunc} text=${d.name ?? '—'} /></dd></div>
        <div><dt>Labels</dt><dd><${Labels} labels=${d.labels} /></dd></div>
        <div><dt>Connected</dt><dd>${d.online ? fmtTime(d.connectedAt) : '—'}</dd></div>
        <div><dt>Last seen</dt><dd title=${fmtTime(d.lastSeenAt)}>${d.online ? 'now' : ago(d.lastSeenAt)}</dd></div>
        <div><dt>Created</dt><dd>${fmtTime(d.createdAt)}</dd></div>
      </dl>
      ${presenceLog.length ? html`<h3>Connection history (since this page opened)</h3><ul class="presence-log">${presenceLog.map((p) => html`<li>${fmtTime(p.at)} · ${p.type}${p.reason ? ` (${p.reason})` : ''}</li>`)}</ul>` : null}
    </section>` : html`<p class="muted">Loading…</p>`}
    <${Telemetry} id=${id} live=${live} />
    <div class="grid2 wide-left">
      <${ConfigPanel} id=${id} writable=${writable} live=${live} />
      <${CommandsPanel} id=${id} writable=${writable} live=${live} />
    </div>
    <${DeadLetters} id=${id} live=${live} />
    ${dialog}`
}

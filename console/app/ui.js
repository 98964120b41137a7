// Small shared pieces of the console: formatting, truncation with a tooltip,
// badges, dialogs, error and empty states, paging, and the uPlot chart.
import { html, useEffect, useRef, useState, uPlot } from './vendor.js'
import { describe } from './api.js'

export function fmtTime (iso) {
  if (!iso) return '—'
  const d = new Date(iso)
  const sameYear = d.getFullYear() === new Date().getFullYear()
  // 24-hour and without the year when it is this one: fits a table column.
  return d.toLocaleString(undefined, { ...(sameYear ? {} : { year: 'numeric' }), month: 'short', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false })
}

export function ago (iso) {
  if (!iso) return 'never'
  const s = Math.round((Date.now() - new Date(iso).getTime()) / 1000)
  if (s < 5) return 'just now'
  if (s < 60) return `${s} s ago`
  if (s < 3600) return `${Math.round(s / 60)} min ago`
  if (s < 86400) return `${Math.round(s / 3600)} h ago`
  return `${Math.round(s / 86400)} d ago`
}

export const num = (n, digits = 1) => n === null || n === undefined ? '—' : Number(n).toLocaleString(undefined, { maximumFractionDigits: digits })

/** Text cut to one line with an ellipsis; the full text is the tooltip. */
export const Trunc = ({ text, cls = '' }) => html`<span class=${'trunc ' + cls} title=${text}>${text}</span>`

export function Badge ({ kind, children, title }) {
  return html`<span class=${'badge badge-' + kind} title=${title}>${children}</span>`
}

export function Presence ({ device }) {
  if (device.disabled) return html`<${Badge} kind="muted">disabled<//>`
  return device.online ? html`<${Badge} kind="ok">online<//>` : html`<${Badge} kind="off">offline<//>`
}

const CONFIG_BADGE = { in_sync: ['ok', 'in sync'], pending: ['warn', 'pending'], failed: ['bad', 'failed'], none: ['muted', 'no config'] }
export function ConfigBadge ({ state }) {
  const [kind, label] = CONFIG_BADGE[state] ?? ['muted', state ?? '—']
  return html`<${Badge} kind=${kind}>${label}<//>`
}

/** A device's config state, from configState when the API gives it, else from the config summary. */
export function configStateOf (device) {
  if (device.configState) return device.configState
  const c = device.config
  if (!c || c.desiredVersion === null) return 'none'
  return c.inSync ? 'in_sync' : 'pending'
}

export function Labels ({ labels }) {
  const entries = Object.entries(labels ?? {})
  if (entries.length === 0) return html`<span class="muted">—</span>`
  return html`<span class="labels">${entries.map(([k, v]) => html`<span class="label" title=${`${k}=${v}`}>${k}=${v}</span>`)}</span>`
}

export function ErrorBox ({ error, what, onRetry }) {
  if (!error) return null
  return html`<div class="error" role="alert">${describe(error, what)}${onRetry ? html` <button type="button" class="link" onClick=${onRetry}>Retry</button>` : null}</div>`
}

export const Empty = ({ children }) => html`<div class="empty">${children}</div>`

export function Notice ({ kind = 'info', children }) {
  return html`<div class=${'notice notice-' + kind} role="status">${children}</div>`
}

/** A modal dialog (native <dialog>: focus stays inside, Escape closes). */
export function Dialog ({ title, onClose, children, wide }) {
  const ref = useRef(null)
  useEffect(() => {
    const d = ref.current
    if (!d.open) d.showModal()
    const cancel = (e) => { e.preventDefault(); onClose() }
    d.addEventListener('cancel', cancel)
    return () => { d.removeEventListener('cancel', cancel); if (d.open) d.close() }
  }, [])
  return html`<dialog ref=${ref} class=${wide ? 'wide' : ''} aria-labelledby="dialog-title">
    <header class="dialog-head"><h2 id="dialog-title">${title}</h2><button type="button" class="icon" aria-label="Close" onClick=${onClose}>×</button></header>
    ${children}
  </dialog>`
}

/** "Are you sure?" with the consequence spelled out; resolves by calling onConfirm or onClose. */
export function Confirm ({ title, message, confirmLabel, danger, onConfirm, onClose }) {
  const [busy, setBusy] = useState(false)
  const [error, setError] = useState(null)
  const go = async () => {
    setBusy(true)
    try { await onConfirm(); onClose() } catch (err) { setError(err); setBusy(false) }
  }
  return html`<${Dialog} title=${title} onClose=${onClose}>
    <p>${message}</p>
    <${ErrorBox} error=${error} />
    <div class="actions">
      <button type="button" onClick=${onClose}>Cancel</button>
      <button type="button" class=${danger ? 'danger' : 'primary'} disabled=${busy} onClick=${go}>${confirmLabel}</button>
    </div>
  <//>`
}

/** A secret shown once, with a copy button. */
export function Secret ({ label, value }) {
  const [copied, setCopied] = useState(false)
  const ref = useRef(null)
  const copy = async () => {
    try { await navigator.clipboard.writeText(value); setCopied(true) } catch { ref.current.select() }
  }
  return html`<div class="secret">
    <label>${label}<input ref=${ref} readonly value=${value} class="mono" onFocus=${(e) => e.target.select()} /></label>
    <button type="button" onClick=${copy}>${copied ? 'Copied' : 'Copy'}</button>
    <p class="hint">Shown only now: store it before closing.</p>
  </div>`
}

/** Cursor paging: a stack of the cursors that led to each page. */
export function usePager () {
  const [stack, setStack] = useState([null])
  return {
    cursor: stack[stack.length - 1],
    page: stack.length,
    next: (c) => setStack([...stack, c]),
    prev: () => setStack(stack.slice(0, -1)),
    reset: () => setStack([null])
  }
}

export function Pager ({ pager, nextCursor, count }) {
  return html`<nav class="pager" aria-label="Pages">
    <button type="button" disabled=${pager.page <= 1} onClick=${pager.prev}>← Previous</button>
    <span>Page ${pager.page}${count !== undefined ? ` · ${count} shown` : ''}</span>
    <button type="button" disabled=${!nextCursor} onClick=${() => pager.next(nextCursor)}>Next →</button>
  </nav>`
}

/** Runs fn every ms while mounted (and once at once); fn may be async. */
export function useInterval (fn, ms, deps = []) {
  const saved = useRef(fn)
  saved.current = fn
  useEffect(() => {
    let stopped = false
    let timer
    const tick = async () => {
      try { await saved.current() } catch {}
      if (!stopped) timer = setTimeout(tick, ms)
    }
    tick()
    return () => { stopped = true; clearTimeout(timer) }
  }, deps)
}

/** Loads with fn() when deps change: {data, error, loading, reload}. */
export function useLoad (fn, deps) {
  const [state, setState] = useState({ data: undefined, error: null, loading: true })
  const [n, setN] = useState(0)
  useEffect(() => {
    let live = true
    setState((s) => ({ ...s, loading: true }))
    fn().then((data) => live && setState({ data, error: null, loading: false }), (error) => live && setState({ data: undefined, error, loading: false }))
    return () => { live = false }
  }, [...deps, n])
  return { ...state, reload: () => setN((x) => x + 1) }
}

function timeTicks (_u, splits) {
  const span = splits.length > 1 ? splits[splits.length - 1] - splits[0] : 0
  const opts = span > 2 * 86400 ? { month: 'short', day: '2-digit' } : span >= 600 ? { hour: '2-digit', minute: '2-digit', hour12: false } : { hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false }
  return splits.map((s) => new Date(s * 1000).toLocaleString(undefined, opts))
}

const PALETTE = ['#2563eb', '#dc2626', '#059669', '#d97706', '#7c3aed', '#0891b2', '#db2777', '#65a30d']

/**
 * A uPlot time-series chart. `data` is [xs (unix seconds), ...ys]; the chart
 * is created once per set of series and then only given new data, and it
 * follows its container's width.
 */
export function Chart ({ series, data, height = 160, label, yLabel, loaded = true }) {
  const box = useRef(null)
  const plot = useRef(null)
  const key = series.join('|')
  useEffect(() => {
    const width = Math.max(box.current.clientWidth, 200)
    plot.current = new uPlot({
      width,
      height,
      legend: { show: series.length > 1 },
      cursor: { drag: { x: false, y: false } },
      // One point (a page just opened) would give a zero-width time range: show a minute around it.
      scales: { x: { time: true, range: (_u, min, max) => min === max ? [min - 60, max + 60] : [min, max] } },
      // Plain 24-hour tick labels: uPlot's default adds a second date line that collides on small charts.
      axes: [{ values: timeTicks, space: 60 }, { label: yLabel, size: 56 }],
      series: [{}, ...series.map((name, i) => ({ label: name, stroke: PALETTE[i % PALETTE.length], width: 1.5, spanGaps: true, points: { show: false } }))]
    }, data, box.current)
    const ro = new ResizeObserver(() => {
      const w = box.current?.clientWidth
      if (w && plot.current) plot.current.setSize({ width: Math.max(w, 200), height })
    })
    ro.observe(box.current)
    return () => { ro.disconnect(); plot.current.destroy(); plot.current = null }
  }, [key])
  useEffect(() => { plot.current?.setData(data) }, [data])
  return html`<div class="chart" ref=${box} role="img" aria-label=${label} data-points=${data[0]?.length ?? 0} data-loaded=${loaded}></div>`
}

export function can (session, scope) {
  const order = { read: 1, write: 2, admin: 3 }
  return (session?.operator?.scopes ?? []).some((s) => order[s] >= order[scope])
}

/** Parses "k=v, k2=v2" into a labels object; throws with a message on a bad pair. */
export function parseLabels (text) {
  const out = {}
  for (const part of text.split(',').map((s) => s.trim()).filter(Boolean)) {
    const eq = part.indexOf('=')
    if (eq <= 0) throw new Error(`"${part}" is not key=value`)
    out[part.slice(0, eq).trim()] = part.slice(eq + 1).trim()
  }
  return out
}

/** JSON text → object, or an error message (the editor validates before sending). */
export function parseJsonObject (text) {
  let v
  try { v = JSON.parse(text) } catch (err) { return { error: 'Not valid JSON: ' + err.message } }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return { error: 'Must be a JSON object ({…})' }
  return { value: v }
}

// Rollouts: the list with progress by state, creation with a live preview of
// how many devices the selector matches, and one rollout's live progress with
// pause / resume / cancel (an automatic pause shows its reason).
import { html, useState, useEffect } from '../vendor.js'
import { get, post, qs, enc } from '../api.js'
import { Trunc, ErrorBox, Empty, Badge, Pager, usePager, useLoad, useInterval, Dialog, Confirm, ago, fmtTime, can, parseJsonObject, num } from '../ui.js'

/** The API gives a selector as {key: value}; shown the way it is typed. */
const selectorText = (sel) => typeof sel === 'string' ? sel : Object.entries(sel ?? {}).map(([k, v]) => `${k}=${v}`).join(',') || '(every device)'

const STATUS_KIND = { running: 'ok', paused: 'warn', cancelled: 'off', completed: 'muted' }
const SEGMENTS = [['applied', 'ok'], ['delivered', 'info'], ['pending', 'muted'], ['failed', 'bad'], ['expired', 'off']]

/** A stacked bar of the targets by state. */
export function Progress ({ counts }) {
  const c = counts ?? {}
  const total = c.targeted || 0
  if (!total) return html`<span class="muted small">no targets</span>`
  const pct = (n) => `${(100 * (n || 0) / total).toFixed(2)}%`
  const label = SEGMENTS.map(([k]) => `${c[k] ?? 0} ${k}`).join(', ')
  return html`<div class="progress-wrap">
    <div class="progress" role="img" aria-label=${`${total} targets: ${label}`} title=${label}>
      ${SEGMENTS.map(([k, kind]) => c[k] ? html`<span class=${'seg seg-' + kind} style=${{ width: pct(c[k]) }}></span>` : null)}
    </div>
    <div class="legend small">${SEGMENTS.filter(([k]) => c[k]).map(([k, kind]) => html`<span><i class=${'dot seg-' + kind}></i>${num(c[k], 0)} ${k}</span>`)}<span class="muted">of ${num(total, 0)}</span></div>
  </div>`
}

function CreateRollout ({ onClose, onCreated }) {
  const [f, setF] = useState({ selector: '', kind: 'config', config: '{\n  \n}', command: '', params: '', rate: '10', maxFailures: '', maxFailureRatio: '' })
  const [preview, setPreview] = useState(null)
  const [error, setError] = useState(null)
  const set = (k) => (e) => setF({ ...f, [k]: e.target.value })
  useEffect(() => {
    if (!f.selector.trim()) { setPreview(null); return }
    const t = setTimeout(async () => {
      try { setPreview(await get('/v1/rollouts/preview' + qs({ selector: f.selector.trim() }))) } catch (err) { setPreview({ error: err }) }
    }, 300)
    return () => clearTimeout(t)
  }, [f.selector])
  const cfg = f.kind === 'config' ? parseJsonObject(f.config) : {}
  const params = f.kind === 'command' && f.params.trim() ? parseJsonObject(f.params) : {}
  const invalid = cfg.error || params.error
  const submit = async (e) => {
    e.preventDefault()
    if (invalid) return
    setError(null)
    const body = { selector: f.selector.trim(), ratePerSecond: Number(f.rate) }
    if (f.kind === 'config') body.config = cfg.value
    else body.command = { name: f.command.trim(), ...(params.value ? { params: params.value } : {}) }
    if (f.maxFailures !== '') body.maxFailures = Number(f.maxFailures)
    if (f.maxFailureRatio !== '') body.maxFailureRatio = Number(f.maxFailureRatio)
    try {
      const r = await post('/v1/rollouts', body)
      onCreated(r)
    } catch (err) { setError(err) }
  }
  return html`<${Dialog} title="New rollout" onClose=${onClose} wide>
    <form class="stack" onSubmit=${submit}>
      <label>Label selector<input name="selector" required placeholder="site=berlin,tier=edge" value=${f.selector} onInput=${set('selector')} aria-describedby="preview" /></label>
      <p id="preview" class="small" aria-live="polite">${preview === null ? html`<span class="muted">Type a selector to see how many devices it targets.</span>`
        : preview.error ? html`<span class="error">${preview.error.message}</span>` : html`<strong data-testid="preview-count">${num(preview.targets, 0)}</strong> devices match (disabled ones are left out).`}</p>
      <fieldset><legend>What to roll out</legend>
        <label class="radio"><input type="radio" name="kind" value="config" checked=${f.kind === 'config'} onChange=${set('kind')} /> Config</label>
        <label class="radio"><input type="radio" name="kind" value="command" checked=${f.kind === 'command'} onChange=${set('kind')} /> Command</label>
      </fieldset>
      ${f.kind === 'config'
        ? html`<label>Config (JSON object)<textarea name="config" class="mono" rows="6" spellcheck="false" value=${f.config} onInput=${set('config')} aria-invalid=${!!cfg.error}></textarea></label>
          ${cfg.error ? html`<p class="error small">${cfg.error}</p>` : null}`
        : html`<div class="row"><label>Command<input name="command" required value=${f.command} onInput=${set('command')} /></label>
          <label class="grow">Params (JSON object, optional)<input name="params" class="mono" value=${f.params} onInput=${set('params')} aria-invalid=${!!params.error} /></label></div>
          ${params.error ? html`<p class="error small">${params.error}</p>` : null}`}
      <div class="row">
        <label>Rate (devices/s)<input name="rate" type="number" min="1" required value=${f.rate} onInput=${set('rate')} /></label>
        <label>Max failures<input name="maxFailures" type="number" min="0" placeholder="none" value=${f.maxFailures} onInput=${set('maxFailures')} /></label>
        <label>Max failure ratio<input name="maxFailureRatio" type="number" min="0" max="1" step="0.01" placeholder="none" value=${f.maxFailureRatio} onInput=${set('maxFailureRatio')} /></label>
      </div>
      <p class="hint">The rollout pauses itself when failures (apply failures, or failed and expired commands) pass either threshold.</p>
      <${ErrorBox} error=${error} />
      <div class="actions"><button type="button" onClick=${onClose}>Cancel</button><button type="submit" class="primary" disabled=${!!invalid || !f.selector.trim()}>Start rollout</button></div>
    </form>
  <//>`
}

export function RolloutsPage ({ session }) {
  const [status, setStatus] = useState('')
  const pager = usePager()
  const [dialog, setDialog] = useState(null)
  const list = useLoad(() => get('/v1/rollouts' + qs({ status, limit: 25, cursor: pager.cursor })), [status, pager.cursor])
  // Progress moves on its own: refresh the page every 5 s.
  useInterval(() => { if (!list.loading) list.reload() }, 5000, [status, pager.cursor])
  const writable = can(session, 'write')
  const items = list.data?.items ?? []
  return html`
    <div class="page-head"><h1>Rollouts</h1>
      ${writable ? html`<div class="head-actions"><button type="button" class="primary" onClick=${() => setDialog(html`<${CreateRollout} onClose=${() => setDialog(null)} onCreated=${(r) => { setDialog(null); location.hash = '#/rollouts/' + enc(r.id) }} />`)}>New rollout</button></div>` : null}
    </div>
    <form class="filters" onSubmit=${(e) => e.preventDefault()} aria-label="Filter rollouts">
      <label>Status<select value=${status} onChange=${(e) => { setStatus(e.target.value); pager.reset() }}>
        <option value="">any</option><option>running</option><option>paused</option><option>completed</option><option>cancelled</option></select></label>
    </form>
    <${ErrorBox} error=${list.error} what="a rollout list" onRetry=${list.reload} />
    ${list.data && items.length === 0 ? html`<${Empty}>No rollouts${status ? ` with status ${status}` : ''}.<//>` : null}
    ${items.length > 0 ? html`<div class="table-wrap"><table class="rollouts"><thead><tr><th scope="col">Rollout</th><th scope="col">Status</th><th scope="col">Progress</th><th scope="col">Created</th></tr></thead>
      <tbody>${items.map((r) => html`<tr key=${r.id}>
        <td><a href=${'#/rollouts/' + enc(r.id)}><${Trunc} text=${selectorText(r.selector)} cls="mono" /></a><div class="muted small">${r.kind ?? 'config'}${r.command ? `: ${r.command.name}` : ''}</div></td>
        <td><${Badge} kind=${STATUS_KIND[r.status] ?? 'muted'}>${r.status}<//>${r.pauseReason ? html`<div class="small warn-text"><${Trunc} text=${r.pauseReason} /></div>` : null}</td>
        <td class="progress-cell"><${Progress} counts=${r.counts} /></td>
        <td class="nowrap" title=${fmtTime(r.createdAt)}>${ago(r.createdAt)}</td>
      </tr>`)}</tbody></table></div>` : null}
    <${Pager} pager=${pager} nextCursor=${list.data?.nextCursor} count=${items.length} />
    ${dialog}`
}

export function RolloutPage ({ id, session }) {
  const [r, setR] = useState(null)
  const [error, setError] = useState(null)
  const [dialog, setDialog] = useState(null)
  const load = async () => {
    try { setR(await get(`/v1/rollouts/${enc(id)}`)); setError(null) } catch (err) { setError(err) }
  }
  useInterval(load, 2000, [id])
  const writable = can(session, 'write')
  const act = async (action) => {
    try { setR(await post(`/v1/rollouts/${enc(id)}/${action}`)); setError(null) } catch (err) { setError(err) }
  }
  if (!r) return html`<p class="crumbs"><a href="#/rollouts">← Rollouts</a></p><h1>Rollout</h1>${error ? html`<${ErrorBox} error=${error} />` : html`<p class="muted">Loading…</p>`}`
  const open = r.status === 'running' || r.status === 'paused'
  return html`
    <p class="crumbs"><a href="#/rollouts">← Rollouts</a></p>
    <div class="page-head"><h1>Rollout <span class="mono small muted" title=${r.id}>${r.id.slice(0, 8)}</span></h1>
      <span data-testid="rollout-status"><${Badge} kind=${STATUS_KIND[r.status] ?? 'muted'}>${r.status}<//></span>
      ${writable && open ? html`<div class="head-actions">
        ${r.status === 'running' ? html`<button type="button" onClick=${() => act('pause')}>Pause</button>` : html`<button type="button" class="primary" onClick=${() => act('resume')}>Resume</button>`}
        <button type="button" class="danger" onClick=${() => setDialog(html`<${Confirm} title="Cancel this rollout?" message="Devices not reached yet keep their current config; this cannot be resumed." confirmLabel="Cancel rollout" danger onClose=${() => setDialog(null)} onConfirm=${() => act('cancel')} />`)}>Cancel rollout</button>
      </div>` : null}
    </div>
    <${ErrorBox} error=${error} />
    ${r.pauseReason ? html`<p class="notice notice-warn" role="status"><strong>Paused automatically:</strong> ${r.pauseReason}</p>` : null}
    <section class="panel"><h2>Progress</h2><${Progress} counts=${r.counts} />
      <dl class="facts-inline small">${Object.entries(r.counts ?? {}).map(([k, v]) => html`<div><dt>${k}</dt><dd>${num(v, 0)}</dd></div>`)}</dl>
    </section>
    <section class="panel facts"><h2>Definition</h2><dl>
      <div><dt>Selector</dt><dd><${Trunc} text=${selectorText(r.selector)} cls="mono" /></dd></div>
      <div><dt>Rate</dt><dd>${r.ratePerSecond} devices/s</dd></div>
      <div><dt>Failure thresholds</dt><dd>${r.maxFailures ?? '—'} failures · ratio ${r.maxFailureRatio ?? '—'}</dd></div>
      <div><dt>Created</dt><dd>${fmtTime(r.createdAt)}</dd></div>
      <div><dt>Updated</dt><dd>${fmtTime(r.updatedAt)}</dd></div>
    </dl>
    ${r.config ? html`<h3>Config</h3><pre class="json">${JSON.stringify(r.config, null, 2)}</pre>` : null}
    ${r.command ? html`<h3>Command</h3><pre class="json">${JSON.stringify(r.command, null, 2)}</pre>` : null}
    </section>
    ${dialog}`
}

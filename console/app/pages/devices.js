// Devices: server-side paging and filters (selector, online, config state,
// id prefix), bulk disable/enable/delete of a selection, create one device
// (secret shown once) and bulk provisioning from a file.
import { html, useState } from '../vendor.js'
import { get, post, request, qs, enc } from '../api.js'
import { Trunc, Presence, ConfigBadge, configStateOf, Labels, ErrorBox, Empty, Pager, usePager, useLoad, Dialog, Confirm, Secret, ago, fmtTime, can, parseLabels } from '../ui.js'

const PAGE = 50

function Filters ({ initial, onApply }) {
  const [f, setF] = useState(initial)
  const set = (k) => (e) => setF({ ...f, [k]: e.target.value })
  const submit = (e) => { e.preventDefault(); onApply(f) }
  const clear = () => { const empty = { selector: '', online: '', configState: '', idPrefix: '' }; setF(empty); onApply(empty) }
  return html`<form class="filters" onSubmit=${submit} role="search" aria-label="Filter devices">
    <label>Label selector<input name="selector" placeholder="site=berlin,tier=edge" value=${f.selector} onInput=${set('selector')} /></label>
    <label>Id prefix<input name="idPrefix" placeholder="sensor-" value=${f.idPrefix} onInput=${set('idPrefix')} /></label>
    <label>Presence<select name="online" value=${f.online} onChange=${set('online')}>
      <option value="">any</option><option value="true">online</option><option value="false">offline</option></select></label>
    <label>Config<select name="configState" value=${f.configState} onChange=${set('configState')}>
      <option value="">any</option><option value="in_sync">in sync</option><option value="pending">pending</option><option value="failed">failed</option><option value="none">no config</option></select></label>
    <div class="filter-actions"><button type="submit" class="primary">Apply</button><button type="button" onClick=${clear}>Clear</button></div>
  </form>`
}

function CreateDevice ({ onClose, onCreated }) {
  const [form, setForm] = useState({ id: '', name: '', labels: '' })
  const [error, setError] = useState(null)
  const [created, setCreated] = useState(null)
  const set = (k) => (e) => setForm({ ...form, [k]: e.target.value })
  const submit = async (e) => {
    e.preventDefault()
    setError(null)
    try {
      const body = {}
      if (form.id.trim()) body.id = form.id.trim()
      if (form.name.trim()) body.name = form.name.trim()
      if (form.labels.trim()) body.labels = parseLabels(form.labels)
      setCreated(await post('/v1/devices', body))
      onCreated()
    } catch (err) { setError(err) }
  }
  return html`<${Dialog} title="New device" onClose=${onClose}>
    ${created
      ? html`<p>Device <strong class="mono">${created.id}</strong> was created. Give it this secret (MQTT password):</p>
          <${Secret} label="Device secret" value=${created.secret} />
          <div class="actions"><a class="button" href=${'#/devices/' + enc(created.id)} onClick=${onClose}>Open device</a><button type="button" class="primary" onClick=${onClose}>Done</button></div>`
      : html`<form onSubmit=${submit} class="stack">
          <label>Device id <span class="muted">(optional: generated when empty)</span><input name="id" value=${form.id} onInput=${set('id')} pattern="[A-Za-z0-9][A-Za-z0-9_.:@\\-]{0,127}" /></label>
          <label>Name<input name="name" value=${form.name} onInput=${set('name')} maxlength="200" /></label>
          <label>Labels<input name="labels" placeholder="site=berlin, tier=edge" value=${form.labels} onInput=${set('labels')} /></label>
          <${ErrorBox} error=${error} />
          <div class="actions"><button type="button" onClick=${onClose}>Cancel</button><button type="submit" class="primary">Create</button></div>
        </form>`}
  <//>`
}

/** NDJSON (one device a line) or a JSON array of {id?, name?, labels?}. */
function parseDeviceFile (text) {
  const t = text.trim()
  if (t.startsWith('[')) return JSON.parse(t)
  return t.split('\n').map((l) => l.trim()).filter(Boolean).map((l, i) => {
    try { return JSON.parse(l) } catch { throw new Error(`line ${i + 1} is not JSON`) }
  })
}

function BulkProvision ({ onClose, onDone }) {
  const [devices, setDevices] = useState(null)
  const [error, setError] = useState(null)
  const [result, setResult] = useState(null)
  const [busy, setBusy] = useState(false)
  const pick = async (e) => {
    setError(null)
    const file = e.target.files[0]
    if (!file) return
    try {
      const list = parseDeviceFile(await file.text())
      if (!Array.isArray(list) || list.length === 0) throw new Error('the file lists no devices')
      setDevices(list)
    } catch (err) { setDevices(null); setError(err) }
  }
  const go = async () => {
    setBusy(true)
    try {
      const text = await request('POST', '/v1/devices/bulk', { devices }, { text: true })
      const lines = text.split('\n').filter(Boolean).map((l) => JSON.parse(l))
      const ok = lines.filter((l) => l.secret)
      const url = URL.createObjectURL(new Blob([ok.map((l) => JSON.stringify(l)).join('\n') + '\n'], { type: 'application/x-ndjson' }))
      setResult({ ok: ok.length, failed: lines.filter((l) => l.error), url })
      onDone()
    } catch (err) { setError(err) }
    setBusy(false)
  }
  return html`<${Dialog} title="Provision devices from a file" onClose=${onClose}>
    ${result
      ? html`<p>${result.ok} devices created${result.failed.length ? `, ${result.failed.length} refused` : ''}.</p>
          ${result.failed.slice(0, 10).map((f) => html`<p class="error small"><span class="mono">${f.id}</span>: ${f.error}</p>`)}
          <p><a class="button primary" href=${result.url} download="device-secrets.ndjson">Download the secrets (NDJSON)</a></p>
          <p class="hint">The secrets are shown only now: download them before closing.</p>
          <div class="actions"><button type="button" onClick=${onClose}>Done</button></div>`
      : html`<div class="stack">
          <label>File: NDJSON, one <code>{"id", "name", "labels"}</code> a line, or a JSON array
            <input type="file" accept=".ndjson,.json,.jsonl,application/json,application/x-ndjson,text/plain" onChange=${pick} /></label>
          ${devices ? html`<p>${devices.length} devices in the file.</p>` : null}
          <${ErrorBox} error=${error} />
          <div class="actions"><button type="button" onClick=${onClose}>Cancel</button><button type="button" class="primary" disabled=${!devices || busy} onClick=${go}>Create ${devices ? devices.length : ''} devices</button></div>
        </div>`}
  <//>`
}

const ACTION_WORDS = { disable: ['Disable', 'Disabling closes their connections and refuses new ones.'], enable: ['Enable', 'They may connect again.'], delete: ['Delete', 'Their telemetry stays; the devices, configs and commands are removed. This cannot be undone.'] }

export function DevicesPage ({ session }) {
  const params = new URLSearchParams(location.hash.split('?')[1] ?? '')
  const [filters, setFilters] = useState({ selector: params.get('selector') ?? '', online: '', configState: '', idPrefix: params.get('idPrefix') ?? '' })
  const pager = usePager()
  const [selected, setSelected] = useState(new Set())
  const [dialog, setDialog] = useState(null)
  const [flash, setFlash] = useState(null)
  const writable = can(session, 'write')
  const list = useLoad(() => get('/v1/devices' + qs({ ...filters, limit: PAGE, cursor: pager.cursor })), [JSON.stringify(filters), pager.cursor])
  const items = list.data?.items ?? []
  const apply = (f) => { setFilters(f); pager.reset(); setSelected(new Set()) }
  const toggle = (id) => { const s = new Set(selected); if (s.has(id)) s.delete(id); else s.add(id); setSelected(s) }
  const allOnPage = items.length > 0 && items.every((d) => selected.has(d.id))
  const toggleAll = () => { const s = new Set(selected); items.forEach((d) => allOnPage ? s.delete(d.id) : s.add(d.id)); setSelected(s) }
  const bulk = (action) => {
    const [verb, consequence] = ACTION_WORDS[action]
    const n = selected.size
    setDialog(html`<${Confirm} title=${`${verb} ${n} device${n === 1 ? '' : 's'}?`} message=${`${verb} ${n} selected device${n === 1 ? '' : 's'}? ${consequence}`}
      confirmLabel=${`${verb} ${n}`} danger=${action !== 'enable'} onClose=${() => setDialog(null)}
      onConfirm=${async () => {
        const r = await post('/v1/devices/bulk-actions', { action, ids: [...selected] })
        setFlash(`${verb}: ${r.matched} matched, ${r.changed} changed.`)
        setSelected(new Set())
        list.reload()
      }} />`)
  }
  return html`
    <div class="page-head"><h1>Devices</h1>
      ${writable ? html`<div class="head-actions">
        <button type="button" class="primary" onClick=${() => setDialog(html`<${CreateDevice} onClose=${() => setDialog(null)} onCreated=${list.reload} />`)}>New device</button>
        <button type="button" onClick=${() => setDialog(html`<${BulkProvision} onClose=${() => setDialog(null)} onDone=${list.reload} />`)}>Provision from file</button>
      </div>` : null}
    </div>
    <${Filters} initial=${filters} onApply=${apply} />
    ${flash ? html`<p class="notice notice-info" role="status">${flash}</p>` : null}
    ${writable && selected.size > 0 ? html`<div class="bulkbar" role="region" aria-label="Selection">
      <strong>${selected.size} selected</strong>
      <button type="button" onClick=${() => bulk('disable')}>Disable</button>
      <button type="button" onClick=${() => bulk('enable')}>Enable</button>
      <button type="button" class="danger" onClick=${() => bulk('delete')}>Delete</button>
      <button type="button" class="link" onClick=${() => setSelected(new Set())}>Clear selection</button>
    </div>` : null}
    <${ErrorBox} error=${list.error} what="these device filters" onRetry=${list.reload} />
    ${list.data && items.length === 0
      ? html`<${Empty}>No devices match these filters.${writable ? ' Create one with “New device”.' : ''}<//>`
      : html`<div class="table-wrap"><table class="devices" aria-busy=${list.loading}>
        <thead><tr>
          ${writable ? html`<th scope="col" class="check"><input type="checkbox" aria-label="Select all on this page" checked=${allOnPage} onChange=${toggleAll} /></th>` : null}
          <th scope="col">Device</th><th scope="col">Presence</th><th scope="col">Last seen</th><th scope="col">Labels</th><th scope="col">Config</th>
        </tr></thead>
        <tbody>${items.map((d) => html`<tr key=${d.id}>
          ${writable ? html`<td class="check"><input type="checkbox" aria-label=${'Select ' + d.id} checked=${selected.has(d.id)} onChange=${() => toggle(d.id)} /></td>` : null}
          <td class="id-cell"><a href=${'#/devices/' + enc(d.id)}><${Trunc} text=${d.id} cls="mono" /></a>${d.name ? html`<${Trunc} text=${d.name} cls="muted small block" />` : null}</td>
          <td><${Presence} device=${d} /></td>
          <td title=${fmtTime(d.lastSeenAt)}>${d.online ? 'now' : ago(d.lastSeenAt)}</td>
          <td class="labels-cell"><${Labels} labels=${d.labels} /></td>
          <td><${ConfigBadge} state=${configStateOf(d)} /></td>
        </tr>`)}</tbody>
      </table></div>`}
    <${Pager} pager=${pager} nextCursor=${list.data?.nextCursor} count=${items.length} />
    ${dialog}`
}

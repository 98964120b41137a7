// The audit log (admin): filter by actor, action, target and time, newest first.
import { html, useState } from '../vendor.js'
import { get, qs } from '../api.js'
import { Trunc, ErrorBox, Empty, Pager, usePager, useLoad, fmtTime } from '../ui.js'

const ACTIONS = ['device.create', 'device.update', 'device.disable', 'device.enable', 'device.delete', 'device.rotate_secret', 'device.bulk_create', 'device.bulk_disable', 'device.bulk_enable', 'device.bulk_delete', 'config.set', 'config.rollback', 'command.create', 'command.cancel', 'rollout.create', 'rollout.pause', 'rollout.resume', 'rollout.cancel', 'token.create', 'token.revoke']
const EMPTY = { actor: '', action: '', targetType: '', targetId: '', from: '', to: '' }

/** A datetime-local value (the browser's zone) as ISO 8601. */
const isoOf = (local) => local ? new Date(local).toISOString() : ''

export function AuditPage () {
  const [draft, setDraft] = useState(EMPTY)
  const [filters, setFilters] = useState(EMPTY)
  const pager = usePager()
  const list = useLoad(() => get('/v1/audit' + qs({ ...filters, from: isoOf(filters.from), to: isoOf(filters.to), limit: 50, cursor: pager.cursor })), [JSON.stringify(filters), pager.cursor])
  const set = (k) => (e) => setDraft({ ...draft, [k]: e.target.value })
  const apply = (e) => { e.preventDefault(); setFilters(draft); pager.reset() }
  const items = list.data?.items ?? []
  return html`
    <div class="page-head"><h1>Audit log</h1></div>
    <form class="filters" onSubmit=${apply} role="search" aria-label="Filter the audit log">
      <label>Actor (token id)<input name="actor" value=${draft.actor} onInput=${set('actor')} /></label>
      <label>Action<select name="action" value=${draft.action} onChange=${set('action')}><option value="">any</option>${ACTIONS.map((a) => html`<option>${a}</option>`)}</select></label>
      <label>Target type<select name="targetType" value=${draft.targetType} onChange=${set('targetType')}><option value="">any</option><option>device</option><option>rollout</option><option>command</option><option>token</option></select></label>
      <label>Target id<input name="targetId" value=${draft.targetId} onInput=${set('targetId')} /></label>
      <label>From<input type="datetime-local" name="from" value=${draft.from} onInput=${set('from')} /></label>
      <label>To<input type="datetime-local" name="to" value=${draft.to} onInput=${set('to')} /></label>
      <div class="filter-actions"><button type="submit" class="primary">Apply</button><button type="button" onClick=${() => { setDraft(EMPTY); setFilters(EMPTY); pager.reset() }}>Clear</button></div>
    </form>
    <${ErrorBox} error=${list.error} what="an audit log" onRetry=${list.reload} />
    ${list.data && items.length === 0 ? html`<${Empty}>No audit entries match.<//>` : null}
    ${items.length > 0 ? html`<div class="table-wrap"><table class="audit"><thead><tr><th scope="col">When</th><th scope="col">Who</th><th scope="col">Action</th><th scope="col">Target</th><th scope="col">Change</th></tr></thead>
      <tbody>${items.map((a) => html`<tr key=${a.id}>
        <td class="nowrap">${fmtTime(a.at)}</td>
        <td><${Trunc} text=${a.actor?.name ?? a.actor?.id ?? '—'} /><div class="muted small"><${Trunc} text=${a.actor?.id ?? ''} cls="mono" /></div></td>
        <td><code>${a.action}</code></td>
        <td><span class="muted small">${a.target?.type}</span> <${Trunc} text=${a.target?.id ?? ''} cls="mono" /></td>
        <td>${a.before || a.after ? html`<details><summary>before / after</summary><pre class="json small">${JSON.stringify({ before: a.before, after: a.after }, null, 2)}</pre><div class="muted small">request <span class="mono">${a.requestId}</span></div></details>` : html`<span class="muted">—</span>`}</td>
      </tr>`)}</tbody></table></div>` : null}
    <${Pager} pager=${pager} nextCursor=${list.data?.nextCursor} count=${items.length} />`
}

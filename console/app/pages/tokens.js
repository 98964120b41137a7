// API tokens (admin): create (the token is shown once), list, revoke.
import { html, useState } from '../vendor.js'
import { get, post, del, enc } from '../api.js'
import { Trunc, ErrorBox, Empty, Badge, useLoad, Dialog, Confirm, Secret, ago, fmtTime } from '../ui.js'

function CreateToken ({ onClose, onCreated }) {
  const [name, setName] = useState('')
  const [scope, setScope] = useState('read')
  const [created, setCreated] = useState(null)
  const [error, setError] = useState(null)
  const submit = async (e) => {
    e.preventDefault()
    try { setCreated(await post('/v1/tokens', { name: name.trim(), scopes: [scope] })); onCreated() } catch (err) { setError(err) }
  }
  return html`<${Dialog} title="New API token" onClose=${onClose}>
    ${created
      ? html`<p>Token <strong>${created.name}</strong> (${created.scopes.join(', ')}) was created.</p><${Secret} label="Token" value=${created.token} />
        <div class="actions"><button type="button" class="primary" onClick=${onClose}>Done</button></div>`
      : html`<form class="stack" onSubmit=${submit}>
        <label>Name<input name="name" required maxlength="100" value=${name} onInput=${(e) => setName(e.target.value)} placeholder="grafana, ci, alice" /></label>
        <fieldset><legend>Scope</legend>
          ${[['read', 'read: see everything'], ['write', 'write: also change devices, configs, commands, rollouts'], ['admin', 'admin: also tokens and the audit log']].map(([s, label]) =>
            html`<label class="radio"><input type="radio" name="scope" value=${s} checked=${scope === s} onChange=${() => setScope(s)} /> ${label}</label>`)}
        </fieldset>
        <${ErrorBox} error=${error} />
        <div class="actions"><button type="button" onClick=${onClose}>Cancel</button><button type="submit" class="primary" disabled=${!name.trim()}>Create token</button></div>
      </form>`}
  <//>`
}

export function TokensPage () {
  const list = useLoad(() => get('/v1/tokens'), [])
  const [dialog, setDialog] = useState(null)
  const items = list.data?.items ?? []
  const revoke = (t) => setDialog(html`<${Confirm} title="Revoke this token?" message=${`Revoke “${t.name}”? Every client using it is refused from now on.`} confirmLabel="Revoke" danger onClose=${() => setDialog(null)}
    onConfirm=${async () => { await del(`/v1/tokens/${enc(t.id)}`); list.reload() }} />`)
  return html`
    <div class="page-head"><h1>API tokens</h1><div class="head-actions"><button type="button" class="primary" onClick=${() => setDialog(html`<${CreateToken} onClose=${() => setDialog(null)} onCreated=${list.reload} />`)}>New token</button></div></div>
    <p class="muted small">The ADMIN_TOKEN of the broker's environment is not listed here.</p>
    <${ErrorBox} error=${list.error} what="tokens" onRetry=${list.reload} />
    ${list.data && items.length === 0 ? html`<${Empty}>No API tokens yet.<//>` : null}
    ${items.length > 0 ? html`<div class="table-wrap"><table class="tokens"><thead><tr><th scope="col">Name</th><th scope="col">Scopes</th><th scope="col">Created</th><th scope="col">Last used</th><th scope="col">State</th><th scope="col"><span class="sr-only">Actions</span></th></tr></thead>
      <tbody>${items.map((t) => html`<tr key=${t.id}>
        <td><${Trunc} text=${t.name} /><div class="muted small mono" title=${t.id}>${t.id.slice(0, 8)}</div></td>
        <td>${t.scopes.join(', ')}</td>
        <td class="nowrap">${fmtTime(t.createdAt)}</td>
        <td class="nowrap" title=${fmtTime(t.lastUsedAt)}>${ago(t.lastUsedAt)}</td>
        <td>${t.revokedAt ? html`<${Badge} kind="off">revoked<//>` : html`<${Badge} kind="ok">active<//>`}</td>
        <td>${t.revokedAt ? null : html`<button type="button" class="small danger" onClick=${() => revoke(t)}>Revoke</button>`}</td>
      </tr>`)}</tbody></table></div>` : null}
    ${dialog}`
}

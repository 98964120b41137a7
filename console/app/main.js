// The console's shell: the session (GET /console/session), sign-in and
// sign-out, the navigation, and a hash router (#/devices/…) so the broker
// serves one page and never sees client routes.
import { html, render, useEffect, useState } from './vendor.js'
import { request, setCsrfToken, whenSessionEnds, describe, ApiError } from './api.js'
import { can, Trunc } from './ui.js'
import { OverviewPage } from './pages/overview.js'
import { DevicesPage } from './pages/devices.js'
import { DevicePage } from './pages/device.js'
import { RolloutsPage, RolloutPage } from './pages/rollouts.js'
import { AuditPage } from './pages/audit.js'
import { TokensPage } from './pages/tokens.js'

function useRoute () {
  // #/devices/<id>?selector=… → ['devices', '<id>'] (a page reads its own query itself).
  const read = () => (location.hash.replace(/^#\/?/, '').replace(/\?.*$/, '') || 'overview').split('/').map(decodeURIComponent)
  const [route, setRoute] = useState(read)
  useEffect(() => {
    const on = () => setRoute(read())
    addEventListener('hashchange', on)
    return () => removeEventListener('hashchange', on)
  }, [])
  return route
}

function SignIn ({ message, onSignedIn }) {
  const [token, setToken] = useState('')
  const [error, setError] = useState(null)
  const [busy, setBusy] = useState(false)
  const submit = async (e) => {
    e.preventDefault()
    setBusy(true)
    setError(null)
    try {
      const session = await request('POST', '/console/session', { token }, { signIn: true })
      setToken('')
      onSignedIn(session)
    } catch (err) {
      setError(err instanceof ApiError && err.status === 401 ? 'That token is not valid, or it was revoked.' : describe(err))
      setBusy(false)
    }
  }
  return html`<main class="signin" id="main">
    <form class="card" onSubmit=${submit} aria-labelledby="signin-title">
      <h1 id="signin-title"><span class="logo" aria-hidden="true">◆</span> fleetgate</h1>
      ${message ? html`<p class="notice notice-warn" role="status">${message}</p>` : null}
      <label for="token">API token</label>
      <input id="token" name="token" type="password" autocomplete="current-password" required value=${token} onInput=${(e) => setToken(e.target.value)} />
      <p class="hint">An operator token (ADMIN_TOKEN, or one from <code>fleetgate tokens create</code>). It is kept in an HttpOnly cookie for this browser session only.</p>
      ${error ? html`<p class="error" role="alert">${error}</p>` : null}
      <button class="primary" type="submit" disabled=${busy || !token}>Sign in</button>
    </form>
  </main>`
}

function Unreachable ({ onRetry }) {
  useEffect(() => { const t = setInterval(onRetry, 5000); return () => clearInterval(t) }, [])
  return html`<main class="signin" id="main"><div class="card" role="alert">
    <h1><span class="logo" aria-hidden="true">◆</span> fleetgate</h1>
    <p class="error">The broker cannot be reached. The console retries every 5 s.</p>
    <button type="button" class="primary" onClick=${onRetry}>Retry now</button>
  </div></main>`
}

// The hash is the router's: the skip link moves focus without changing it.
function skipToMain (e) {
  e.preventDefault()
  document.getElementById('main')?.focus()
}

const NAV = [
  ['overview', 'Overview', 'read'],
  ['devices', 'Devices', 'read'],
  ['rollouts', 'Rollouts', 'read'],
  ['audit', 'Audit log', 'admin'],
  ['tokens', 'Tokens', 'admin']
]

function Shell ({ session, route, onSignOut, children }) {
  const [open, setOpen] = useState(false)
  useEffect(() => setOpen(false), [route.join('/')])
  const op = session.operator
  return html`<div class="shell">
    <a class="skip" href="#main" onClick=${skipToMain}>Skip to content</a>
    <header class="top">
      <button type="button" class="menu" aria-expanded=${open} aria-controls="nav" onClick=${() => setOpen(!open)}>☰ <span class="sr-only">Menu</span></button>
      <a class="brand" href="#/overview"><span class="logo" aria-hidden="true">◆</span> fleetgate</a>
      <span class="who"><${Trunc} text=${op.name} /> <span class="scopes">${op.scopes.join(', ')}</span></span>
      <button type="button" onClick=${onSignOut}>Sign out</button>
    </header>
    <nav id="nav" class=${open ? 'side open' : 'side'} aria-label="Main">
      <ul>${NAV.filter(([, , scope]) => can(session, scope)).map(([path, label]) =>
        html`<li><a href=${'#/' + path} aria-current=${route[0] === path ? 'page' : undefined}>${label}</a></li>`)}
      </ul>
    </nav>
    <main id="main" tabindex="-1">${children}</main>
  </div>`
}

function Page ({ route, session }) {
  const [page, id] = route
  switch (page) {
    case 'devices': return id ? html`<${DevicePage} key=${id} id=${id} session=${session} />` : html`<${DevicesPage} session=${session} />`
    case 'rollouts': return id ? html`<${RolloutPage} key=${id} id=${id} session=${session} />` : html`<${RolloutsPage} session=${session} />`
    case 'audit': return html`<${AuditPage} session=${session} />`
    case 'tokens': return html`<${TokensPage} session=${session} />`
    default: return html`<${OverviewPage} session=${session} />`
  }
}

function App () {
  // undefined: checking; null: signed out; 'unreachable'; else the session.
  const [session, setSession] = useState(undefined)
  const [message, setMessage] = useState(null)
  const route = useRoute()
  const adopt = (s) => { setCsrfToken(s.csrfToken); setMessage(null); setSession(s) }
  const check = async () => {
    try {
      adopt(await request('GET', '/console/session', undefined, { signIn: true }))
    } catch (err) {
      if (err instanceof ApiError && err.status === 0) setSession('unreachable')
      else setSession(null)
    }
  }
  useEffect(() => {
    whenSessionEnds((msg) => { setCsrfToken(null); setMessage(msg); setSession(null) })
    check()
  }, [])
  const signOut = async () => {
    try { await request('DELETE', '/console/session', undefined, { signIn: true }) } catch {}
    setCsrfToken(null)
    setMessage('You are signed out.')
    setSession(null)
  }
  if (session === undefined) return html`<p class="boot">Loading…</p>`
  if (session === 'unreachable') return html`<${Unreachable} onRetry=${check} />`
  if (session === null) return html`<${SignIn} message=${message} onSignedIn=${adopt} />`
  return html`<${Shell} session=${session} route=${route} onSignOut=${signOut}><${Page} route=${route} session=${session} /><//>`
}

render(html`<${App} />`, document.getElementById('app'))

// The console's server side without a browser: the session cookie and its
// attributes, CSRF on cookie-authenticated writes, the assets and their
// security headers, and GET /v1/overview.
import test from 'ava'
import { startTestBroker, api, connectDevice, TEST_ADMIN_TOKEN, type TestBroker } from '../helpers/broker.js'
import { waitFor } from '../helpers/wait.js'
import { csrfTokenFor } from '../../devices/operator-auth.js'
import { quantileFromBuckets } from '../../broker/replica-stats.js'

let broker: TestBroker
let proxied: TestBroker
test.before(async () => {
  broker = await startTestBroker()
  // Behind a TLS-terminating proxy (X-Forwarded-Proto: https).
  proxied = await startTestBroker({ HTTP_TRUST_PROXY: true }, broker.db)
})
test.after.always(async () => {
  await proxied?.close()
  await broker?.close()
  await broker?.db.drop()
})

const cookieOf = (setCookie: unknown) => String(setCookie).split(';')[0]!

async function signIn (b: TestBroker, token = TEST_ADMIN_TOKEN, headers: Record<string, string> = {}) {
  return await b.app.http.inject({ method: 'POST', url: '/console/session', payload: { token }, headers })
}

test('signing in sets an HttpOnly SameSite=Strict cookie (Secure only over TLS) and returns the CSRF token', async (t) => {
  const res = await signIn(broker)
  t.is(res.statusCode, 200)
  const set = String(res.headers['set-cookie'])
  t.regex(set, /^fleetgate_session=[^;]+; Path=\/; HttpOnly; SameSite=Strict$/)
  t.notRegex(set, /Secure/)
  const body = res.json()
  t.is(body.csrfToken, csrfTokenFor(TEST_ADMIN_TOKEN))
  t.deepEqual(body.operator, { tokenId: 'admin', name: 'admin', scopes: ['admin'] })
  t.is(res.headers['cache-control'], 'no-store')

  const tls = await signIn(proxied, TEST_ADMIN_TOKEN, { 'x-forwarded-proto': 'https' })
  t.regex(String(tls.headers['set-cookie']), /; Secure$/)
  // Without trustProxy the header is not believed.
  const spoofed = await signIn(broker, TEST_ADMIN_TOKEN, { 'x-forwarded-proto': 'https' })
  t.notRegex(String(spoofed.headers['set-cookie']), /Secure/)
})

test('a bad token is refused, and no cookie is set', async (t) => {
  const res = await signIn(broker, 'definitely-not-a-token')
  t.is(res.statusCode, 401)
  t.is(res.json().code, 'unauthorized')
  t.is(res.headers['set-cookie'], undefined)
})

test('a cross-origin sign-in is refused', async (t) => {
  const res = await signIn(broker, TEST_ADMIN_TOKEN, { origin: 'https://evil.example' })
  t.is(res.statusCode, 403)
  t.is(res.headers['set-cookie'], undefined)
})

test('the cookie authenticates /v1; writes need x-csrf-token; a bearer token needs none', async (t) => {
  const cookie = cookieOf((await signIn(broker)).headers['set-cookie'])
  const csrf = csrfTokenFor(TEST_ADMIN_TOKEN)
  const read = await broker.app.http.inject({ method: 'GET', url: '/v1/devices', headers: { cookie } })
  t.is(read.statusCode, 200)
  const body = { name: 'cookie-made' }
  const without = await broker.app.http.inject({ method: 'POST', url: '/v1/devices', headers: { cookie }, payload: body })
  t.is(without.statusCode, 403)
  t.is(without.json().code, 'csrf_failed')
  t.is(without.headers['content-type'], 'application/problem+json; charset=utf-8')
  const wrong = await broker.app.http.inject({ method: 'POST', url: '/v1/devices', headers: { cookie, 'x-csrf-token': csrfTokenFor('another-token') }, payload: body })
  t.is(wrong.statusCode, 403)
  const right = await broker.app.http.inject({ method: 'POST', url: '/v1/devices', headers: { cookie, 'x-csrf-token': csrf }, payload: body })
  t.is(right.statusCode, 201)
  const del = await broker.app.http.inject({ method: 'DELETE', url: `/v1/devices/${right.json().id}`, headers: { cookie } })
  t.is(del.statusCode, 403, 'DELETE is state-changing too')
  // Bearer requests are not cookie-authenticated: no CSRF token needed, and a cookie alongside is ignored.
  t.is((await api(broker.app, 'POST', '/v1/devices', body, TEST_ADMIN_TOKEN, { cookie })).status, 201)
  // The session check answers with the same CSRF token (every replica derives it from the token).
  const session = await broker.app.http.inject({ method: 'GET', url: '/console/session', headers: { cookie } })
  t.is(session.json().csrfToken, csrf)
  const other = await proxied.app.http.inject({ method: 'GET', url: '/console/session', headers: { cookie } })
  t.is(other.json().csrfToken, csrf)
})

test('a revoked token ends the session; signing out clears the cookie', async (t) => {
  const created = await api(broker.app, 'POST', '/v1/tokens', { name: 'temp', scopes: ['read'] })
  const cookie = cookieOf((await signIn(broker, created.body.token)).headers['set-cookie'])
  t.is((await broker.app.http.inject({ method: 'GET', url: '/console/session', headers: { cookie } })).statusCode, 200)
  await api(broker.app, 'DELETE', `/v1/tokens/${created.body.id}`)
  t.is((await broker.app.http.inject({ method: 'GET', url: '/console/session', headers: { cookie } })).statusCode, 401)
  t.is((await broker.app.http.inject({ method: 'GET', url: '/v1/devices', headers: { cookie } })).statusCode, 401)
  const out = await broker.app.http.inject({ method: 'DELETE', url: '/console/session', headers: { cookie } })
  t.is(out.statusCode, 204)
  t.regex(String(out.headers['set-cookie']), /^fleetgate_session=; Max-Age=0; Path=\/; HttpOnly; SameSite=Strict/)
  t.is((await broker.app.http.inject({ method: 'GET', url: '/console/session' })).statusCode, 401)
  // A mangled cookie is no session, not a server error.
  t.is((await broker.app.http.inject({ method: 'GET', url: '/v1/devices', headers: { cookie: 'fleetgate_session=%E0%A4%A' } })).statusCode, 401)
})

test('the console and its modules are served with a strict CSP; vendor modules import no bare specifiers', async (t) => {
  const root = await broker.app.http.inject({ method: 'GET', url: '/' })
  t.is(root.statusCode, 302)
  t.is(root.headers.location, '/console/')
  const index = await broker.app.http.inject({ method: 'GET', url: '/console/' })
  t.is(index.statusCode, 200)
  t.regex(String(index.headers['content-type']), /^text\/html/)
  const csp = String(index.headers['content-security-policy'])
  for (const d of ["default-src 'self'", "script-src 'self'", "style-src 'self'", "frame-ancestors 'none'", "base-uri 'none'", "form-action 'self'"]) t.true(csp.includes(d), d)
  t.notRegex(csp, /unsafe/)
  t.is(index.headers['x-content-type-options'], 'nosniff')
  t.notRegex(index.body, /<script(?![^>]*\bsrc=)[^>]*>/, 'no inline script in the page')
  t.notRegex(index.body, /\sstyle=/, 'no inline style')
  for (const name of ['preact.js', 'preact-hooks.js', 'htm.js', 'uplot.js']) {
    const res = await broker.app.http.inject({ method: 'GET', url: `/console/vendor/${name}` })
    t.is(res.statusCode, 200, name)
    t.regex(String(res.headers['content-type']), /^text\/javascript/)
    t.notRegex(res.body, /\b(?:import|export)\s*(?:[\w$*{}\s,]+from\s*)?["'](?![./])/, `${name} imports only URLs`)
    const again = await broker.app.http.inject({ method: 'GET', url: `/console/vendor/${name}`, headers: { 'if-none-match': String(res.headers.etag) } })
    t.is(again.statusCode, 304)
  }
  const css = await broker.app.http.inject({ method: 'GET', url: '/console/vendor/uplot.css' })
  t.regex(String(css.headers['content-type']), /^text\/css/)
  const app = await broker.app.http.inject({ method: 'GET', url: '/console/app/main.js' })
  t.is(app.statusCode, 200)
  t.regex(String(app.headers['content-type']), /javascript/)
  t.truthy(app.headers['content-security-policy'])
  t.is((await broker.app.http.inject({ method: 'GET', url: '/console/app/../../package.json' })).statusCode, 404)
  t.is((await broker.app.http.inject({ method: 'GET', url: '/console/vendor/nope.js' })).statusCode, 404)
  // The console's routes are not part of the public API document.
  const doc = (await broker.app.http.inject({ method: 'GET', url: '/openapi.json' })).json()
  t.false(Object.keys(doc.paths).some((p) => p.startsWith('/console')))
})

test('GET /v1/overview: device counts from PostgreSQL, this replica\'s rates and readiness', async (t) => {
  const a = await api(broker.app, 'POST', '/v1/devices', { id: 'ov-1' })
  await api(broker.app, 'POST', '/v1/devices', { id: 'ov-2' })
  await api(broker.app, 'PATCH', '/v1/devices/ov-2', { disabled: true })
  await api(broker.app, 'PUT', '/v1/devices/ov-1/config', { config: { a: 1 } })
  const c = await connectDevice(broker.url, 'ov-1', a.body.secret)
  try {
    await c.publishAsync('devices/ov-1/telemetry', JSON.stringify({ temp: 1 }), { qos: 1 })
    await c.publishAsync('devices/ov-1/telemetry', 'not json', { qos: 1 })
    const o = await waitFor(async () => {
      const r = await api(broker.app, 'GET', '/v1/overview')
      return r.body.devices.online >= 1 && r.body.rates.telemetryStoredPerSecond > 0 ? r.body : undefined
    }, { what: 'overview with the device online and a stored rate', timeoutMs: 10_000 })
    t.true(o.devices.total >= 2)
    t.is(o.devices.offline, o.devices.total - o.devices.online)
    t.true(o.devices.disabled >= 1)
    t.true(o.devices.config.pending >= 1)
    t.true(o.deadLetters.byReason.invalid_json >= 1)
    t.is(o.deadLetters.windowHours, 24)
    t.true(typeof o.pubackP99Ms === 'number' && o.pubackP99Ms > 0)
    t.true(o.rates.connectsPerSecond >= 0)
    t.is(o.ingest.queueCapacity, broker.app.queue.capacity)
    t.deepEqual(o.readiness, { ready: true, reason: null, database: true, redis: null })
    // Read scope is enough.
    const reader = await api(broker.app, 'POST', '/v1/tokens', { name: 'r', scopes: ['read'] })
    t.is((await api(broker.app, 'GET', '/v1/overview', undefined, reader.body.token)).status, 200)
    t.is((await api(broker.app, 'GET', '/v1/overview', undefined, null)).status, 401)
  } finally { c.end(true) }
})

test('PUBACK p99 interpolates inside its histogram bucket, like histogram_quantile', (t) => {
  t.is(quantileFromBuckets(0.99, [[0.01, 0], [0.1, 0], [Infinity, 0]]), null)
  // 100 observations, all in (0.01, 0.025]: p99 at 99 % of that bucket.
  t.is(Math.round(quantileFromBuckets(0.99, [[0.01, 0], [0.025, 100], [Infinity, 100]])! * 1e6), Math.round((0.01 + 0.015 * 0.99) * 1e6))
  // Past the last finite bound: that bound.
  t.is(quantileFromBuckets(0.99, [[0.01, 0], [0.025, 50], [Infinity, 100]]), 0.025)
})

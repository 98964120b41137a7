// The web console (issue 14) in a real Chromium against a real broker with
// real MQTT devices: one browser for the file, a fresh context (own cookies)
// per test. Serial: the audit test reads what the others did.
import test from 'ava'
import type { Browser, Page } from 'playwright-core'
import type { MqttClient } from 'mqtt'
import { startTestBroker, api, connectDevice, TEST_ADMIN_TOKEN, type TestBroker } from '../helpers/broker.js'
import { waitFor } from '../helpers/wait.js'
import { launchBrowser, openPage, signIn, type ConsolePage } from './browser.js'

let broker: TestBroker
let browser: Browser
let base: string
const clients: MqttClient[] = []

test.before(async () => {
  broker = await startTestBroker()
  base = `http://127.0.0.1:${broker.app.httpPort}`
  browser = await launchBrowser()
})
test.after.always(async () => {
  for (const c of clients) c.end(true)
  await browser?.close()
  await broker?.close()
  await broker?.db.drop()
})

async function device (id: string, labels: Record<string, string> = {}): Promise<string> {
  const r = await api(broker.app, 'POST', '/v1/devices', { id, labels })
  if (r.status !== 201) throw new Error(`create ${id}: ${r.status} ${JSON.stringify(r.body)}`)
  return r.body.secret
}

async function online (id: string, secret: string): Promise<MqttClient> {
  const c = await connectDevice(broker.url, id, secret)
  clients.push(c)
  await waitFor(async () => (await api(broker.app, 'GET', `/v1/devices/${id}`)).body.online, { what: `${id} online` })
  return c
}

/** Checks at the end of each test: no CSP violation, no script error. */
function clean (t: { deepEqual (a: unknown, b: unknown, m?: string): void }, p: ConsolePage) {
  t.deepEqual(p.violations, [], 'no Content-Security-Policy violations')
  t.deepEqual(p.errors, [], 'no script errors')
}

const text = async (page: Page, selector: string) => (await page.locator(selector).innerText()).trim()

test.serial('sign-in refuses a bad token, serves a strict CSP, keeps the token out of scripts and URLs, and signs out', async (t) => {
  const res = await fetch(base + '/', { redirect: 'manual' })
  t.is(res.status, 302)
  t.is(res.headers.get('location'), '/console/')
  const html = await fetch(base + '/console/')
  const csp = html.headers.get('content-security-policy') ?? ''
  t.regex(csp, /default-src 'self'/)
  t.regex(csp, /script-src 'self'(;|$)/)
  t.notRegex(csp, /unsafe-inline|unsafe-eval/)
  t.is(html.headers.get('x-frame-options'), 'DENY')

  const p = await openPage(browser)
  const { page } = p
  await page.goto(base + '/')
  await page.getByLabel('API token').fill('not-a-real-token-at-all')
  await page.getByRole('button', { name: 'Sign in' }).click()
  await page.getByRole('alert').filter({ hasText: 'not valid' }).waitFor()
  t.is(await page.getByRole('navigation', { name: 'Main' }).count(), 0)

  await page.getByLabel('API token').fill(TEST_ADMIN_TOKEN)
  await page.getByRole('button', { name: 'Sign in' }).click()
  await page.getByRole('heading', { name: 'Fleet overview' }).waitFor()
  const cookies = await page.context().cookies()
  const session = cookies.find((c) => c.name === 'fleetgate_session')
  t.truthy(session)
  t.true(session!.httpOnly)
  t.is(session!.sameSite, 'Strict')
  t.false(session!.secure, 'plain HTTP here: Secure only over TLS')
  t.is(await page.evaluate(() => document.cookie), '', 'the session cookie is invisible to scripts')
  t.false(page.url().includes(TEST_ADMIN_TOKEN))
  t.is(await page.evaluate(() => JSON.stringify(localStorage) + JSON.stringify(sessionStorage)), '{}{}')
  // The overview is live: its numbers come from GET /v1/overview.
  await page.getByText('PostgreSQL: ok').waitFor()

  await page.getByRole('button', { name: 'Sign out' }).click()
  await page.getByText('You are signed out.').waitFor()
  t.falsy((await page.context().cookies()).find((c) => c.name === 'fleetgate_session' && c.value !== ''))
  // Reloading stays signed out.
  await page.reload()
  await page.getByLabel('API token').waitFor()
  clean(t, p)
  await p.close()
})

test.serial('the device list filters in the server: selector, id prefix, presence', async (t) => {
  await device('berlin-a-1', { site: 'berlin' })
  await device('berlin-a-2', { site: 'berlin' })
  const s = await device('paris-b-1', { site: 'paris' })
  await online('paris-b-1', s)
  const p = await openPage(browser)
  const { page } = p
  await signIn(page, base, TEST_ADMIN_TOKEN)
  await page.getByRole('link', { name: 'Devices' }).click()
  const rows = page.locator('table.devices tbody tr')
  await waitFor(async () => (await rows.count()) >= 3, { what: 'three devices listed' })

  await page.getByLabel('Label selector').fill('site=berlin')
  await page.getByRole('button', { name: 'Apply' }).click()
  await waitFor(async () => (await rows.count()) === 2, { what: 'two berlin devices' })
  t.deepEqual((await rows.locator('td.id-cell .mono').allInnerTexts()).sort(), ['berlin-a-1', 'berlin-a-2'])

  await page.getByRole('button', { name: 'Clear' }).click()
  await page.getByLabel('Id prefix').fill('paris-')
  await page.getByRole('button', { name: 'Apply' }).click()
  await waitFor(async () => (await rows.count()) === 1, { what: 'one paris device' })

  await page.getByLabel('Id prefix').fill('')
  await page.getByLabel('Presence').selectOption('true')
  await page.getByRole('button', { name: 'Apply' }).click()
  await waitFor(async () => (await rows.count()) === 1 && (await rows.first().innerText()).includes('paris-b-1'), { what: 'only the online device' })
  t.regex(await rows.first().innerText(), /online/)
  clean(t, p)
  await p.close()
})

test.serial('create a device (secret shown once), provision from a file, bulk-disable a selection after a confirmation that states the count', async (t) => {
  const p = await openPage(browser)
  const { page } = p
  await signIn(page, base, TEST_ADMIN_TOKEN)
  await page.getByRole('link', { name: 'Devices' }).click()
  await page.getByRole('button', { name: 'New device' }).click()
  const dialog = page.getByRole('dialog')
  await dialog.getByLabel(/Device id/).fill('made-in-console-1')
  await dialog.getByLabel('Labels').fill('batch=ui, site=lab')
  await dialog.getByRole('button', { name: 'Create' }).click()
  const secret = await dialog.getByLabel('Device secret').inputValue()
  t.regex(secret, /^\S{20,}$/)
  // The secret works for MQTT.
  const c = await connectDevice(broker.url, 'made-in-console-1', secret)
  c.end(true)
  await dialog.getByRole('button', { name: 'Done' }).click()

  await page.getByRole('button', { name: 'Provision from file' }).click()
  await dialog.locator('input[type=file]').setInputFiles({ name: 'fleet.ndjson', mimeType: 'application/x-ndjson', buffer: Buffer.from('{"id":"file-dev-1","labels":{"batch":"ui"}}\n{"id":"file-dev-2","labels":{"batch":"ui"}}\n') })
  await dialog.getByText('2 devices in the file.').waitFor()
  await dialog.getByRole('button', { name: 'Create 2 devices' }).click()
  await dialog.getByText('2 devices created').waitFor()
  t.is(await dialog.getByRole('link', { name: /Download the secrets/ }).getAttribute('download'), 'device-secrets.ndjson')
  await dialog.getByRole('button', { name: 'Done' }).click()

  await page.getByLabel('Label selector').fill('batch=ui')
  await page.getByRole('button', { name: 'Apply' }).click()
  const rows = page.locator('table.devices tbody tr')
  await waitFor(async () => (await rows.count()) === 3, { what: 'the three new devices' })
  await page.getByLabel('Select file-dev-1').check()
  await page.getByLabel('Select file-dev-2').check()
  await page.getByRole('button', { name: 'Disable', exact: true }).click()
  await page.getByRole('dialog').getByRole('heading', { name: 'Disable 2 devices?' }).waitFor()
  await page.getByRole('dialog').getByRole('button', { name: 'Disable 2' }).click()
  await page.getByText('Disable: 2 matched, 2 changed.').waitFor()
  await waitFor(async () => (await rows.filter({ hasText: 'disabled' }).count()) === 2, { what: 'two disabled rows' })
  t.true((await api(broker.app, 'GET', '/v1/devices/file-dev-1')).body.disabled)
  t.false((await api(broker.app, 'GET', '/v1/devices/made-in-console-1')).body.disabled)
  clean(t, p)
  await p.close()
})

test.serial('a device page shows readings live from the event stream: chart and latest readings update', async (t) => {
  const id = 'live-sensor-1'
  const secret = await device(id, { site: 'lab' })
  const c = await online(id, secret)
  await c.publishAsync(`devices/${id}/telemetry`, JSON.stringify({ temp: 20.5, env: { humidity: 40 } }), { qos: 1 })
  const p = await openPage(browser)
  const { page } = p
  await signIn(page, base, TEST_ADMIN_TOKEN)
  await page.goto(`${base}/console/#/devices/${id}`)
  await page.getByText('● live').waitFor({ timeout: 10_000 })
  const readings = page.locator('table.readings tbody tr')
  await waitFor(async () => (await readings.count()) >= 1, { what: 'the stored reading listed' })
  await page.locator('.chart[data-loaded=true] .uplot').first().waitFor()
  // One chart per numeric field, nested ones named by their dot path.
  t.deepEqual((await page.locator('h3.field-name').allInnerTexts()).map((s) => s.split(/\s/)[0]).sort(), ['env.humidity', 'temp'])

  // New readings arrive through GET /v1/events while the page is open.
  for (let i = 0; i < 3; i++) {
    await c.publishAsync(`devices/${id}/telemetry`, JSON.stringify({ temp: 30 + i, env: { humidity: 41 + i } }), { qos: 1 })
  }
  await waitFor(async () => (await readings.count()) >= 4, { what: 'live readings in the table', timeoutMs: 10_000 })
  t.regex(await text(page, 'table.readings tbody tr:first-child'), /"temp":32/)
  await page.locator('h3.field-name', { hasText: 'temp' }).getByText('32').waitFor()
  // The chart redraws at most once a second; it then holds the 4 readings.
  await waitFor(async () => (await page.evaluate(() => (document.querySelector('.chart') as HTMLElement).dataset.points)) === '4', { what: 'the chart holding the 4 readings', timeoutMs: 5000 })
  t.pass()
  clean(t, p)
  await p.close()
})

test.serial('config: edit, delivered, the in-sync badge flips when the device reports, then roll back', async (t) => {
  const id = 'config-dev-1'
  const secret = await device(id)
  const c = await online(id, secret)
  const received: Array<{ version: number, config: unknown }> = []
  c.on('message', (topic, payload) => { if (topic === `devices/${id}/config`) received.push(JSON.parse(payload.toString())) })
  await c.subscribeAsync(`devices/${id}/config`, { qos: 1 })
  const p = await openPage(browser)
  const { page } = p
  await signIn(page, base, TEST_ADMIN_TOKEN)
  await page.goto(`${base}/console/#/devices/${id}`)
  const editor = page.getByLabel('Edit desired config (JSON)')
  await editor.fill('{"interval": ')
  await page.getByText('Not valid JSON').waitFor()
  t.true(await page.getByRole('button', { name: 'Save and push' }).isDisabled(), 'invalid JSON is not sent')
  await editor.fill('{"interval": 10}')
  await page.getByRole('button', { name: 'Save and push' }).click()
  await page.getByText('Version 1 set; delivered to the connected device').waitFor()
  await waitFor(() => received.find((m) => m.version === 1), { what: 'config v1 at the device' })
  await page.locator('[data-testid=config-state]').getByText('pending').waitFor()

  await c.publishAsync(`devices/${id}/config/reported`, JSON.stringify({ version: 1, config: { interval: 10 } }), { qos: 1 })
  await page.locator('[data-testid=config-state]').getByText('in sync').waitFor({ timeout: 10_000 })

  await editor.fill('{"interval": 60}')
  await page.getByRole('button', { name: 'Save and push' }).click()
  await page.getByText('Version 2 set').waitFor()
  await page.locator('[data-testid=config-state]').getByText('pending').waitFor()
  // The diff shows what the device has not applied yet.
  t.regex(await text(page, 'table.diff'), /interval\s+10\s+60/)

  await page.getByRole('button', { name: 'Roll back to v1' }).click()
  await page.getByRole('dialog').getByRole('button', { name: 'Roll back' }).click()
  await page.getByText('Rolled back: version 3 (= 1) delivered').waitFor()
  await waitFor(() => received.find((m) => m.version === 3), { what: 'config v3 at the device' })
  t.deepEqual(received.find((m) => m.version === 3)!.config, { interval: 10 })
  clean(t, p)
  await p.close()
})

test.serial('a command that a simulated device answers succeeds, with its state timeline', async (t) => {
  const id = 'cmd-dev-1'
  const secret = await device(id)
  const c = await online(id, secret)
  c.on('message', (topic) => {
    const m = new RegExp(`^devices/${id}/commands/([^/]+)$`).exec(topic)
    if (m) void c.publishAsync(`${topic}/result`, JSON.stringify({ status: 'succeeded', result: { rebooted: true } }), { qos: 1 })
  })
  await c.subscribeAsync(`devices/${id}/commands/+`, { qos: 1 })
  const p = await openPage(browser)
  const { page } = p
  await signIn(page, base, TEST_ADMIN_TOKEN)
  await page.goto(`${base}/console/#/devices/${id}`)
  await page.getByLabel('Command', { exact: true }).fill('reboot')
  await page.getByLabel('Params (JSON object, optional)').fill('{"delaySeconds": 1}')
  await page.getByRole('button', { name: 'Send' }).click()
  const cmd = page.locator('li.command').first()
  await cmd.locator('.badge', { hasText: 'succeeded' }).waitFor({ timeout: 10_000 })
  const timeline = await cmd.locator('ol.timeline').innerText()
  // (sent may be skipped when the device answers before the broker records the hand-over)
  t.regex(timeline, /^queued [\s\S]*\nsucceeded /)
  t.regex(await cmd.innerText(), /rebooted/)
  clean(t, p)
  await p.close()
})

test.serial('a rollout: live count preview, progress, pause', async (t) => {
  for (let i = 0; i < 6; i++) await device(`roll-${i}`, { ring: 'canary' })
  const p = await openPage(browser)
  const { page } = p
  await signIn(page, base, TEST_ADMIN_TOKEN)
  await page.getByRole('link', { name: 'Rollouts' }).click()
  await page.getByRole('button', { name: 'New rollout' }).click()
  const dialog = page.getByRole('dialog')
  await dialog.getByLabel('Label selector').fill('ring=canary')
  await dialog.locator('[data-testid=preview-count]').getByText('6').waitFor()
  await dialog.getByLabel('Config (JSON object)').fill('{"firmware": "2.1"}')
  await dialog.getByLabel('Rate (devices/s)').fill('1')
  await dialog.getByLabel('Max failures').fill('2')
  await dialog.getByRole('button', { name: 'Start rollout' }).click()
  await page.locator('[data-testid=rollout-status]').getByText('running').waitFor()
  // Progress: targets move from pending to delivered/pushed at 1 device/s.
  await waitFor(async () => /[1-9]\d* (delivered|applied)/.test(await page.locator('.progress-wrap .legend').first().innerText()), { what: 'rollout progress', timeoutMs: 10_000 })
  await page.getByRole('button', { name: 'Pause' }).click()
  await page.locator('[data-testid=rollout-status]').getByText('paused').waitFor()
  await page.getByRole('button', { name: 'Resume' }).waitFor()
  await page.getByRole('link', { name: '← Rollouts' }).click()
  await page.locator('table.rollouts tbody tr', { hasText: 'ring=canary' }).locator('.badge', { hasText: 'paused' }).waitFor({ timeout: 10_000 }).catch(async (err) => { await page.screenshot({ path: '/tmp/rollouts-fail.png' }); throw err })
  clean(t, p)
  await p.close()
})

test.serial('the audit log shows the changes made above, and filters', async (t) => {
  const p = await openPage(browser)
  const { page } = p
  await signIn(page, base, TEST_ADMIN_TOKEN)
  await page.getByRole('link', { name: 'Audit log' }).click()
  const rows = page.locator('table.audit tbody tr')
  await rows.first().waitFor()
  const all = (await rows.allInnerTexts()).join('\n')
  for (const action of ['device.create', 'device.bulk_create', 'device.bulk_disable', 'config.set', 'config.rollback', 'command.create', 'rollout.create', 'rollout.pause']) {
    t.true(all.includes(action), `audit shows ${action}`)
  }
  await page.getByLabel('Action').selectOption('config.rollback')
  await page.getByRole('button', { name: 'Apply' }).click()
  await waitFor(async () => (await rows.count()) === 1, { what: 'one rollback entry' })
  t.regex(await rows.first().innerText(), /config-dev-1/)
  clean(t, p)
  await p.close()
})

test.serial('a read-only token sees no write controls, and the server refuses its writes', async (t) => {
  const created = await api(broker.app, 'POST', '/v1/tokens', { name: 'viewer', scopes: ['read'] })
  const p = await openPage(browser)
  const { page } = p
  await signIn(page, base, created.body.token)
  await page.getByRole('link', { name: 'Devices' }).click()
  await page.locator('table.devices tbody tr').first().waitFor()
  t.is(await page.getByRole('button', { name: 'New device' }).count(), 0)
  t.is(await page.locator('table.devices input[type=checkbox]').count(), 0)
  t.is(await page.getByRole('link', { name: 'Tokens' }).count(), 0)
  t.is(await page.getByRole('link', { name: 'Audit log' }).count(), 0)
  await page.goto(`${base}/console/#/devices/config-dev-1`)
  await page.getByRole('heading', { name: 'Config', exact: true }).waitFor()
  t.is(await page.getByRole('button', { name: /Rotate secret|Disable|Delete|Send|Save and push/ }).count(), 0)
  t.is(await page.getByLabel('Edit desired config (JSON)').count(), 0)
  // The server refuses anyway (with a valid CSRF token: the scope decides).
  const status = await page.evaluate(async () => {
    const s = await (await fetch('/console/session')).json()
    const r = await fetch('/v1/devices/config-dev-1', { method: 'PATCH', headers: { 'content-type': 'application/json', 'x-csrf-token': s.csrfToken }, body: '{"disabled":true}' })
    return r.status
  })
  t.is(status, 403)
  clean(t, p)
  await p.close()
})

test.serial('with the session cookie, a state-changing request without the CSRF token is refused', async (t) => {
  const p = await openPage(browser)
  const { page } = p
  await signIn(page, base, TEST_ADMIN_TOKEN)
  const result = await page.evaluate(async () => {
    const body = JSON.stringify({ name: 'csrf-probe' })
    const without = await fetch('/v1/devices', { method: 'POST', headers: { 'content-type': 'application/json' }, body })
    const wrong = await fetch('/v1/devices', { method: 'POST', headers: { 'content-type': 'application/json', 'x-csrf-token': 'guess' }, body })
    const s = await (await fetch('/console/session')).json()
    const right = await fetch('/v1/devices', { method: 'POST', headers: { 'content-type': 'application/json', 'x-csrf-token': s.csrfToken }, body })
    return { without: without.status, code: (await without.json()).code, wrong: wrong.status, right: right.status, read: (await fetch('/v1/devices?limit=1')).status }
  })
  t.deepEqual(result, { without: 403, code: 'csrf_failed', wrong: 403, right: 201, read: 200 })
  clean(t, p)
  await p.close()
})

test.serial('a revoked token sends the console back to sign-in with a message', async (t) => {
  const created = await api(broker.app, 'POST', '/v1/tokens', { name: 'short-lived', scopes: ['write'] })
  const p = await openPage(browser)
  const { page } = p
  await signIn(page, base, created.body.token)
  await page.getByRole('heading', { name: 'Fleet overview' }).waitFor()
  t.is((await api(broker.app, 'DELETE', `/v1/tokens/${created.body.id}`)).status, 204)
  await page.getByText('Your session has ended').waitFor({ timeout: 10_000 })
  await page.getByLabel('API token').waitFor()
  clean(t, p)
  await p.close()
})

// `npm run screenshots`: starts a broker (embedded PostgreSQL in a temporary
// directory), a small simulated fleet over real MQTT (long ids and labels on
// purpose, devices publishing, one failing its config, dead letters, a
// command, a paused rollout), signs in with Chromium and captures every page
// of the console at 1280×800, the device list at a narrow width, dialogs, and
// the error states (token revoked, broker unreachable) into docs/screenshots/.
import { mkdtemp, rm, mkdir } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import mqtt, { type MqttClient } from 'mqtt'
import type { Page } from 'playwright-core'
import { loadConfig } from '../broker/config.js'
import { createLogger } from '../broker/logger.js'
import { startApp } from '../broker/app.js'
import { launchBrowser, openPage, signIn } from '../test/console/browser.js'

const OUT = join(process.cwd(), 'docs', 'screenshots')
const ADMIN = 'screenshot-admin-token-0123456789'
const FLEET_SECONDS = Number(process.env.SCREENSHOT_WARMUP_SECONDS ?? 45)

const dataDir = await mkdtemp(join(tmpdir(), 'fleetgate-screenshots-'))
await mkdir(OUT, { recursive: true })
const log = createLogger({ level: process.env.LOG_LEVEL ?? 'warn', destination: process.stderr })
const app = await startApp(loadConfig({}, {
  DATA_DIR: dataDir, HTTP_HOST: '127.0.0.1', HTTP_PORT: 0, MQTT_HOST: '127.0.0.1', MQTT_PORT: 0, ADMIN_TOKEN: ADMIN, PRESENCE_FLUSH_MS: 100
}), log, { defaultMetrics: false })
const base = `http://127.0.0.1:${app.httpPort}`
const mqttUrl = `mqtt://127.0.0.1:${app.mqttPort}`
const clients: MqttClient[] = []
const timers: NodeJS.Timeout[] = []

async function call (method: string, path: string, body?: unknown, token = ADMIN): Promise<any> { // eslint-disable-line @typescript-eslint/no-explicit-any
  const res = await fetch(base + path, { method, headers: { authorization: `Bearer ${token}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) }, body: body === undefined ? undefined : JSON.stringify(body) })
  const text = await res.text()
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text}`)
  try { return JSON.parse(text) } catch { return text }
}

const shot = async (page: Page, name: string, fullPage = false) => {
  await sleep(300) // let charts and fonts settle
  await page.screenshot({ path: join(OUT, name + '.png'), fullPage })
  console.log('wrote docs/screenshots/' + name + '.png')
}

try {
  // ---- the fleet ----
  const LONG = 'warehouse-berlin-north-building-7-floor-3-cold-storage-aisle-12-rack-04-temperature-humidity-probe-000042'
  const sites = ['berlin', 'paris', 'madrid', 'oslo']
  const devices: Array<{ id: string, secret: string, labels: Record<string, string> }> = []
  const mk = async (id: string, labels: Record<string, string>, name?: string) => {
    const r = await call('POST', '/v1/devices', { id, labels, ...(name ? { name } : {}) })
    devices.push({ id, secret: r.secret, labels })
  }
  await mk(LONG, { site: 'berlin', tier: 'edge', customer: 'nordic-cold-chain-logistics-international-holding-gmbh-and-co-kg' }, 'Cold storage probe, aisle 12, rack 4 (north building, floor 3)')
  for (let i = 1; i <= 23; i++) {
    const site = sites[i % sites.length]!
    await mk(`sensor-${site}-${String(i).padStart(3, '0')}`, { site, tier: i % 3 === 0 ? 'gateway' : 'edge', ring: i <= 8 ? 'canary' : 'stable' })
  }
  const connect = async (d: { id: string, secret: string }) => {
    const c = await mqtt.connectAsync(mqttUrl, { clientId: d.id, username: d.id, password: d.secret, reconnectPeriod: 0 })
    clients.push(c)
    return c
  }
  // 18 devices online and publishing; the rest stay offline.
  const online = devices.slice(0, 18)
  let phase = 0
  for (const [n, d] of online.entries()) {
    const c = await connect(d)
    await c.subscribeAsync([`devices/${d.id}/config`, `devices/${d.id}/commands/+`], { qos: 1 })
    c.on('message', (topic, payload) => {
      if (topic.endsWith('/config')) {
        const m = JSON.parse(payload.toString()) as { version: number, config: unknown }
        // One device refuses its configs, so the console has a failure to show.
        const failed = d.id === 'sensor-oslo-003'
        void c.publishAsync(`${topic}/reported`, JSON.stringify(failed ? { version: m.version, status: 'failed', error: 'unsupported key "firmware" for hardware rev B' } : { version: m.version, config: m.config, status: 'applied' }), { qos: 1 })
      } else if (/\/commands\/[^/]+$/.test(topic)) {
        void c.publishAsync(`${topic}/result`, JSON.stringify({ status: 'succeeded', result: { rebootedAt: new Date().toISOString() } }), { qos: 1 })
      }
    })
    const every = n === 0 ? 1000 : 3000
    timers.push(setInterval(() => {
      phase += 0.05
      const t = 4 + 3 * Math.sin(phase + n) + Math.random() * 0.4
      void c.publishAsync(`devices/${d.id}/telemetry`, JSON.stringify({ temp: Math.round(t * 100) / 100, humidity: Math.round(55 + 10 * Math.cos(phase / 2 + n)), env: { pressure: 1013 + Math.round(3 * Math.sin(phase / 3)) } }), { qos: 1 }).catch(() => {})
    }, every))
  }
  // Dead letters: malformed payloads.
  const noisy = clients[3]!
  await noisy.publishAsync(`devices/${online[3]!.id}/telemetry`, 'not json at all', { qos: 1 })
  await noisy.publishAsync(`devices/${online[3]!.id}/telemetry`, '{"temp": 21.5,', { qos: 1 })
  await clients[0]!.publishAsync(`devices/${LONG}/telemetry`, '[1, 2, 3]', { qos: 1 })
  // Configs (one of them fails), a command, tokens, a rollout paused part-way.
  await call('PUT', `/v1/devices/${LONG}/config`, { config: { sampleSeconds: 10, alarm: { tempHigh: 8, tempLow: 2 } } })
  await call('PUT', `/v1/devices/${LONG}/config`, { config: { sampleSeconds: 5, alarm: { tempHigh: 7, tempLow: 2 }, display: 'celsius' } })
  await call('PUT', '/v1/devices/sensor-oslo-003/config', { config: { firmware: '2.1.0' } })
  await call('PUT', '/v1/devices/sensor-paris-021/config', { config: { sampleSeconds: 30 } }) // offline: pending
  await call('POST', `/v1/devices/${LONG}/commands`, { name: 'reboot', params: { delaySeconds: 5 } })
  await call('POST', `/v1/devices/${LONG}/commands`, { name: 'calibrate', params: { reference: 4.0 }, ttlSeconds: 600 })
  await call('POST', '/v1/tokens', { name: 'grafana dashboard (read only)', scopes: ['read'] })
  await call('POST', '/v1/tokens', { name: 'ci deploy pipeline', scopes: ['write'] })
  const stale = await call('POST', '/v1/tokens', { name: 'old laptop', scopes: ['admin'] })
  await call('DELETE', `/v1/tokens/${stale.id}`)
  const done = await call('POST', '/v1/rollouts', { selector: 'ring=canary', config: { sampleSeconds: 15 }, ratePerSecond: 50 })
  const paused = await call('POST', '/v1/rollouts', { selector: 'ring=stable', config: { sampleSeconds: 20, firmware: '2.1.0' }, ratePerSecond: 1, maxFailures: 3 })
  await sleep(3500)
  await call('POST', `/v1/rollouts/${paused.id}/pause`)
  void done
  await call('PATCH', '/v1/devices/sensor-madrid-022', { disabled: true })

  // ---- the browser ----
  const browser = await launchBrowser()
  const p = await openPage(browser)
  const page = p.page
  await page.goto(base + '/')
  await page.getByLabel('API token').waitFor()
  await shot(page, '01-sign-in')
  await page.getByLabel('API token').fill('wrong-token-0000000000')
  await page.getByRole('button', { name: 'Sign in' }).click()
  await page.getByRole('alert').waitFor()
  await shot(page, '02-sign-in-refused')
  await page.getByLabel('API token').fill(ADMIN)
  await page.getByRole('button', { name: 'Sign in' }).click()
  await page.getByRole('heading', { name: 'Fleet overview' }).waitFor()
  console.log(`collecting ${FLEET_SECONDS} s of overview trends…`)
  await sleep(FLEET_SECONDS * 1000)
  await shot(page, '03-overview', true)

  await page.goto(base + '/console/#/devices')
  await page.locator('table.devices tbody tr').first().waitFor()
  await shot(page, '04-devices')
  await page.locator('table.devices tbody tr input[type=checkbox]').nth(1).check()
  await page.locator('table.devices tbody tr input[type=checkbox]').nth(2).check()
  await page.locator('table.devices tbody tr input[type=checkbox]').nth(4).check()
  await page.getByRole('button', { name: 'Disable', exact: true }).click()
  await page.getByRole('dialog').waitFor()
  await shot(page, '05-devices-bulk-confirm')
  await page.getByRole('dialog').getByRole('button', { name: 'Cancel' }).click()
  await page.getByLabel('Label selector').fill('site=berlin')
  await page.getByLabel('Presence').selectOption('true')
  await page.getByRole('button', { name: 'Apply' }).click()
  await sleep(500)
  await shot(page, '06-devices-filtered')
  await page.getByRole('button', { name: 'New device' }).click()
  await page.getByRole('dialog').getByLabel(/Device id/).fill('sensor-lisbon-100')
  await page.getByRole('dialog').getByLabel('Labels').fill('site=lisbon, tier=edge')
  await page.getByRole('dialog').getByRole('button', { name: 'Create' }).click()
  await page.getByRole('dialog').getByText('Shown only now').waitFor()
  await shot(page, '07-device-created-secret')

  await page.goto(base + '/console/#/devices/' + encodeURIComponent(LONG))
  await page.locator('.chart[data-loaded=true] .uplot').first().waitFor()
  await sleep(6000) // live readings arrive
  await shot(page, '08-device', true)
  await page.getByRole('button', { name: '1 h' }).click()
  await page.locator('.chart[data-loaded=true] .uplot').first().waitFor()
  await page.goto(base + '/console/#/devices/sensor-oslo-003')
  await page.locator('[data-testid=config-state]').waitFor()
  await sleep(1500)
  await shot(page, '09-device-config-failed', true)

  await page.goto(base + '/console/#/rollouts')
  await page.locator('table.rollouts tbody tr').first().waitFor()
  await shot(page, '10-rollouts')
  await page.getByRole('button', { name: 'New rollout' }).click()
  await page.getByRole('dialog').getByLabel('Label selector').fill('site=berlin,tier=edge')
  await page.getByRole('dialog').locator('[data-testid=preview-count]').waitFor()
  await page.getByRole('dialog').getByLabel('Config (JSON object)').fill('{\n  "sampleSeconds": 5\n}')
  await page.getByRole('dialog').getByLabel('Max failure ratio').fill('0.1')
  await shot(page, '11-rollout-create')
  await page.getByRole('dialog').getByRole('button', { name: 'Cancel' }).click()
  await page.goto(base + '/console/#/rollouts/' + paused.id)
  await page.locator('[data-testid=rollout-status]').waitFor()
  await shot(page, '12-rollout', true)

  await page.goto(base + '/console/#/audit')
  await page.locator('table.audit tbody tr').first().waitFor()
  await shot(page, '13-audit')
  await page.goto(base + '/console/#/tokens')
  await page.getByRole('button', { name: 'New token' }).waitFor()
  await sleep(300)
  await shot(page, '14-tokens')

  // Narrow: the navigation collapses behind the menu button.
  const narrow = await openPage(browser, { width: 390, height: 844 })
  await signIn(narrow.page, base, ADMIN)
  await narrow.page.goto(base + '/console/#/devices')
  await narrow.page.locator('table.devices tbody tr').first().waitFor()
  await shot(narrow.page, '15-devices-narrow')
  await narrow.page.getByRole('button', { name: 'Menu' }).click()
  await shot(narrow.page, '16-narrow-menu-open')
  await narrow.close()

  // A read-only operator: no write controls.
  const viewer = await call('POST', '/v1/tokens', { name: 'viewer', scopes: ['read'] })
  const ro = await openPage(browser)
  await signIn(ro.page, base, viewer.token)
  await ro.page.goto(base + '/console/#/devices/' + encodeURIComponent(LONG))
  await ro.page.locator('.chart[data-loaded=true] .uplot').first().waitFor()
  await shot(ro.page, '17-device-read-only')

  // Token revoked while signed in.
  await call('DELETE', `/v1/tokens/${viewer.id}`)
  await ro.page.goto(base + '/console/#/overview')
  await ro.page.getByText('Your session has ended').waitFor({ timeout: 10_000 })
  await shot(ro.page, '18-error-token-revoked')
  await ro.close()

  // Broker unreachable: stop it under an open overview.
  await page.goto(base + '/console/#/overview')
  await page.getByText('PostgreSQL: ok').waitFor()
  await sleep(15_000) // a few points on the trend charts
  for (const t of timers) clearInterval(t)
  for (const c of clients) c.end(true)
  await app.close()
  await page.getByText('The broker cannot be reached').waitFor({ timeout: 15_000 })
  await shot(page, '19-error-broker-unreachable')
  if (p.violations.length || p.errors.length) console.error('page problems:', p.violations, p.errors)
  await browser.close()
} finally {
  for (const t of timers) clearInterval(t)
  for (const c of clients) c.end(true)
  await app.close()
  await rm(dataDir, { recursive: true, force: true })
}

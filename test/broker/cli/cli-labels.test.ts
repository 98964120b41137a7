// One set of label rules for every entry point (issue "Configuration errors",
// item 4): the same bad labels are refused, with the same message, by the
// device:create CLI, REST create, bulk create and update, and label selectors
// (device list and rollouts). Nothing is created on the way.
import test from 'ava'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { startTestBroker, api, type TestBroker } from '../../helpers/broker.js'

const run = promisify(execFile)

const KEY_RULE = 'use 1 to 63 letters, digits or _ . / -, starting with a letter or digit'
const VALUE_RULE = 'use up to 128 letters, digits or _ . : / @ -'
const BAD: Array<{ key: string, value: string, message: string }> = [
  { key: 'bad key!', value: 'x', message: `invalid label key "bad key!": ${KEY_RULE}` },
  { key: '-site', value: 'x', message: `invalid label key "-site": ${KEY_RULE}` },
  { key: 'k'.repeat(64), value: 'x', message: `invalid label key "${'k'.repeat(64)}": ${KEY_RULE}` },
  { key: 'site', value: 'New York', message: `invalid label value site="New York": ${VALUE_RULE}` },
  { key: 'site', value: 'v'.repeat(129), message: `invalid label value site="${'v'.repeat(129)}": ${VALUE_RULE}` }
]

let broker: TestBroker
test.before(async () => {
  broker = await startTestBroker({ API_RATE_LIMIT_PER_MINUTE: 100_000 })
  await api(broker.app, 'POST', '/v1/devices', { id: 'lbl-existing', labels: { site: 'berlin' } })
})
test.after.always(async () => { await broker?.close(); await broker?.db.drop() })

test('the device:create CLI refuses each bad label with the message, exit 2, creating nothing', async (t) => {
  for (const { key, value, message } of BAD) {
    const failed = await run(process.execPath, ['--import', 'tsx', 'broker/cli/create-device-cli.ts', '--id', 'lbl-cli', `--label=${key}=${value}`], { env: { ...process.env, DATABASE_URL: broker.db.url } })
      .then(() => undefined, (e: { code: number, stderr: string }) => e)
    t.is(failed?.code, 2, key)
    t.is(failed?.stderr, `device:create: ${message}\n`, key)
  }
  t.is((await api(broker.app, 'GET', '/v1/devices/lbl-cli')).status, 404)
})

test('REST create, bulk create and update refuse each bad label with the same message', async (t) => {
  for (const { key, value, message } of BAD) {
    const labels = { tier: 'edge', [key]: value }
    const attempts = [
      await api(broker.app, 'POST', '/v1/devices', { id: 'lbl-rest', labels }),
      await api(broker.app, 'POST', '/v1/devices/bulk', { count: 2, idPrefix: 'lbl-bulk', labels }),
      await api(broker.app, 'POST', '/v1/devices/bulk', { devices: [{ id: 'lbl-bulk-ok' }, { id: 'lbl-bulk-bad', labels }] }),
      await api(broker.app, 'PATCH', '/v1/devices/lbl-existing', { labels })
    ]
    for (const r of attempts) {
      t.is(r.status, 400, key)
      t.is(r.body.code, 'invalid_request', key)
      t.is(r.body.detail, message, key)
    }
  }
  t.is((await api(broker.app, 'GET', '/v1/devices/lbl-rest')).status, 404)
  t.is((await api(broker.app, 'GET', '/v1/devices/lbl-bulk-ok')).status, 404)
  t.is((await api(broker.app, 'GET', '/v1/devices/lbl-bulk-1')).status, 404)
  t.deepEqual((await api(broker.app, 'GET', '/v1/devices/lbl-existing')).body.labels, { site: 'berlin' })
})

test('label selectors (device list, rollouts) refuse each bad label with the same message', async (t) => {
  for (const { key, value, message } of BAD) {
    const selector = `tier=edge,${key}=${value}`
    const list = await api(broker.app, 'GET', `/v1/devices?labels=${encodeURIComponent(selector)}`)
    const rollout = await api(broker.app, 'POST', '/v1/rollouts', { selector, config: { fw: '1' } })
    for (const r of [list, rollout]) {
      t.is(r.status, 400, key)
      t.is(r.body.code, 'invalid_selector', key)
      t.is(r.body.detail, message, key)
    }
  }
})

test('good labels pass every entry point', async (t) => {
  const labels = { 'site.eu/zone-1': 'a_b.c:d/e@f-g', empty: '' }
  t.is((await api(broker.app, 'POST', '/v1/devices', { id: 'lbl-good', labels })).status, 201)
  t.is((await api(broker.app, 'PATCH', '/v1/devices/lbl-good', { labels })).status, 200)
  const out = await run(process.execPath, ['--import', 'tsx', 'broker/cli/create-device-cli.ts', '--id', 'lbl-good-cli', ...Object.entries(labels).flatMap(([k, v]) => ['--label', `${k}=${v}`])], { env: { ...process.env, DATABASE_URL: broker.db.url } })
  t.is(JSON.parse(out.stdout).id, 'lbl-good-cli')
  const listed = await api(broker.app, 'GET', `/v1/devices?labels=${encodeURIComponent('site.eu/zone-1=a_b.c:d/e@f-g,empty=')}`)
  t.deepEqual(listed.body.items.map((d: { id: string }) => d.id).sort(), ['lbl-good', 'lbl-good-cli'])
})

// The `fleetgate` commands that follow the fleet live (telemetry tail,
// events, rollouts watch) and read the operator views (rollouts, audit, dead
// letters, status), against a real broker: a reading published over MQTT
// reaches `telemetry tail`, and Ctrl-C (SIGINT) ends a stream with exit 0.
import test from 'ava'
import { api, connectDevice, startTestBroker, type TestBroker } from '../../helpers/broker.js'
import { waitFor } from '../../helpers/wait.js'
import { brokerEnv, fleetgate, json, ok, start } from './fleetgate-cli.js'

let broker: TestBroker
let env: Record<string, string | undefined>
test.before(async () => {
  broker = await startTestBroker({ API_RATE_LIMIT_PER_MINUTE: 100_000 })
  env = brokerEnv(broker)
})
test.after.always(async () => { await broker?.close(); await broker?.db.drop() })

const fg = async (...args: string[]) => await fleetgate(args, env)

test.serial('telemetry tail prints a reading published over MQTT; SIGINT closes the stream and exits 0', async (t) => {
  t.timeout(60_000)
  const dev = (await api(broker.app, 'POST', '/v1/devices', { id: 'tail-1' })).body
  await api(broker.app, 'POST', '/v1/devices', { id: 'tail-other' })
  const client = await connectDevice(broker.url, dev.id, dev.secret)
  const tail = start(['telemetry', 'tail', 'tail-1', 'tail-other', '-o', 'table'], env)
  try {
    // Telemetry is live only: publish until the stream (opened in the child) shows one.
    let n = 0
    await waitFor(async () => {
      await client.publishAsync('devices/tail-1/telemetry', JSON.stringify({ temp: 20 + n++ / 10 }), { qos: 1 })
      return tail.stdout().includes('tail-1')
    }, { timeoutMs: 30_000, intervalMs: 300, what: 'a reading in the tail' })
    t.regex(tail.stdout(), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ {2}tail-1 +\{"temp": ?2\d(\.\d)?\}$/m)
  } finally {
    await client.endAsync()
    tail.child.kill('SIGINT')
  }
  const r = await tail.done
  t.is(r.code, 0, r.stderr)
  t.is(r.signal, null)
  t.is(r.stderr, '')
})

test.serial('events -o ndjson follows device events; --kinds is checked', async (t) => {
  t.timeout(60_000)
  const events = start(['events', '--kinds', 'device', '-o', 'ndjson'], env)
  let i = 0
  const ids: string[] = []
  try {
    await waitFor(async () => {
      const id = `ev-${i++}`
      ids.push(id)
      await api(broker.app, 'POST', '/v1/devices', { id })
      return events.stdout().includes('"created"')
    }, { timeoutMs: 30_000, intervalMs: 300, what: 'a device event' })
  } finally {
    events.child.kill('SIGINT')
  }
  const r = await events.done
  t.is(r.code, 0, r.stderr)
  // Other tests create devices too: the first of ours.
  const first = r.stdout.trim().split('\n').map((l) => JSON.parse(l)).find((e) => ids.includes(e.deviceId))
  t.like(first, { kind: 'device', type: 'created' })
  t.is(typeof first.at, 'string')
  const bad = await fg('events', '--kinds', 'telemetry,weather')
  t.is(bad.code, 2)
  t.regex(bad.stderr, /^error: --kinds: expected some of telemetry, presence, config, command, dead_letter, rollout, device, got 'weather'/)
})

test.serial('rollouts create → ls → get → pause → resume → cancel; watch follows a rollout to completion', async (t) => {
  t.timeout(90_000)
  for (const id of ['ro-1', 'ro-2', 'ro-3']) await api(broker.app, 'POST', '/v1/devices', { id, labels: { ring: 'canary' } })
  // 30 devices at 1/s: still running through pause, resume and cancel, even
  // on a fast run (3 devices finished between resume and cancel).
  await api(broker.app, 'POST', '/v1/devices/bulk', { count: 30, idPrefix: 'ctl', labels: { ring: 'ctl' } })
  const created = await fg('rollouts', 'create', '--selector', 'ring=ctl', '--config', '{"fw":"2.1"}', '--rate', '1')
  ok(t, created, 'create')
  const r = json(created)
  t.like(r, { status: 'running', config: { fw: '2.1' }, ratePerSecond: 1 })
  t.is(r.counts.targeted, 30)
  const ls = await fg('rollouts', 'ls', '-o', 'table')
  ok(t, ls, 'ls')
  t.regex(ls.stdout, new RegExp(`^ID +KIND +SELECTOR +STATUS +PROGRESS +CREATED\n${r.id} +config +ring=ctl +running +\\d+/30 done`))
  t.is(json(await fg('rollouts', 'get', r.id)).id, r.id)
  const table = await fg('rollouts', 'get', r.id, '-o', 'table')
  t.regex(table.stdout, /^id +[0-9a-f-]{36}\nstatus +\w+\nselector +ring=ctl\nsets +config \{"fw":"2\.1"\}\nrate +1 devices\/s\n/)
  const paused = await fg('rollouts', 'pause', r.id)
  ok(t, paused, 'pause')
  t.is(json(paused).status, 'paused')
  t.is(json(await fg('rollouts', 'ls', '--status', 'paused')).items[0].id, r.id)
  ok(t, await fg('rollouts', 'resume', r.id), 'resume')
  const cancelled = await fg('rollouts', 'cancel', r.id)
  ok(t, cancelled, 'cancel')
  t.is(json(cancelled).status, 'cancelled')
  const again = await fg('rollouts', 'cancel', r.id)
  t.is(again.code, 1)
  t.regex(again.stderr, /^error invalid_transition: /)
  t.is((await fg('rollouts', 'get', '00000000-0000-4000-8000-000000000000')).code, 3)

  // watch: one JSON rollout per change without a terminal, exit 0 at completion.
  const second = json(await fg('rollouts', 'create', '--selector', 'ring=canary', '--config', '{"fw":"2.2"}', '--rate', '2'))
  const watched = await fg('rollouts', 'watch', second.id, '--interval', '200', '-o', 'ndjson')
  ok(t, watched, 'watch')
  const states = watched.stdout.trim().split('\n').map((l) => JSON.parse(l) as { status: string, counts: { pushed?: number, delivered?: number } })
  t.is(states.at(-1)!.status, 'completed')
  t.true(states.every((s) => s.status === 'running' || s.status === 'completed'))
  // A cancelled rollout ends watch with exit 1.
  await api(broker.app, 'POST', '/v1/devices/bulk', { count: 30, idPrefix: 'big', labels: { ring: 'big' } })
  const third = json(await fg('rollouts', 'create', '--selector', 'ring=big', '--config', '{"fw":"2.3"}', '--rate', '1'))
  t.is((await api(broker.app, 'POST', `/v1/rollouts/${third.id}/cancel`)).status, 200)
  const watchCancelled = await fg('rollouts', 'watch', third.id, '-o', 'table')
  t.is(watchCancelled.code, 1)
  t.regex(watchCancelled.stderr, /was cancelled/)
})

test.serial('rollouts watch stops on SIGINT with exit 0 (the rollout goes on)', async (t) => {
  t.timeout(60_000)
  // 40 devices at 1/s: still running when watch starts, even on a loaded machine.
  await api(broker.app, 'POST', '/v1/devices/bulk', { count: 40, idPrefix: 'slow', labels: { ring: 'slow' } })
  const r = (await api(broker.app, 'POST', '/v1/rollouts', { selector: 'ring=slow', config: { fw: '3' }, ratePerSecond: 1 })).body
  const watch = start(['rollouts', 'watch', r.id, '--interval', '200', '-o', 'table'], env)
  await waitFor(() => watch.stdout().includes(r.id.slice(0, 8)), { timeoutMs: 30_000, what: 'the progress line' })
  watch.child.kill('SIGINT')
  const done = await watch.done
  t.is(done.code, 0, done.stderr)
  t.regex(done.stdout, new RegExp(`^${r.id.slice(0, 8)} {2}running +\\d+/40 done`))
  t.not((await api(broker.app, 'GET', `/v1/rollouts/${r.id}`)).body.status, 'cancelled')
  await api(broker.app, 'POST', `/v1/rollouts/${r.id}/cancel`)
})

test.serial('audit ls shows who changed what, newest first', async (t) => {
  ok(t, await fg('devices', 'create', 'aud-1'), 'create')
  ok(t, await fg('devices', 'update', 'aud-1', '--name', 'Audited'), 'update')
  const r = await fg('audit', 'ls', '--target-type', 'device', '--target', 'aud-1')
  ok(t, r, 'audit ls')
  const items = json(r).items as Array<{ action: string, actor: { name: string }, target: { type: string, id: string } }>
  t.deepEqual(items.map((a) => a.action), ['device.update', 'device.create'])
  t.like(items[1], { target: { type: 'device', id: 'aud-1' } })
  const table = await fg('audit', 'ls', '--action', 'device.update', '--target', 'aud-1', '-o', 'table')
  t.regex(table.stdout, /^AT +ACTOR +ACTION +TARGET +CHANGE\n\d{4}-\d\d-\d\dT[\d:]+Z +\S+ +device\.update +device aud-1 /)
  const bad = await fg('audit', 'ls', '--from', 'last week')
  t.is(bad.code, 2)
})

test.serial('dead-letters ls lists a payload that was not JSON, with counts by reason', async (t) => {
  const dev = (await api(broker.app, 'POST', '/v1/devices', { id: 'dl-1' })).body
  const client = await connectDevice(broker.url, dev.id, dev.secret)
  await client.publishAsync('devices/dl-1/telemetry', 'not json at all', { qos: 1 })
  await client.endAsync()
  const r = await fg('dead-letters', 'ls', '--device', 'dl-1')
  ok(t, r, 'ls')
  const page = json(r)
  t.like(page.items[0], { deviceId: 'dl-1', reason: 'invalid_json' })
  t.is(Buffer.from(page.items[0].payloadBase64, 'base64').toString(), 'not json at all')
  t.is(page.countsByReason.invalid_json, 1)
  const table = await fg('dead-letters', 'ls', '--device', 'dl-1', '-o', 'table')
  t.regex(table.stdout, /^RECEIVED +DEVICE +REASON +DETAIL +PAYLOAD\n\d+[sm] ago +dl-1 +invalid_json +.* not json at all\n\nby reason: invalid_json 1\n$/)
})

test.serial('status shows readiness and device counts; exit 0 when ready', async (t) => {
  const r = await fg('status', '-o', 'table')
  ok(t, r, 'status')
  t.regex(r.stdout, /^ready +yes\n/m)
  t.regex(r.stdout, /^devices +\d+ \(\d+ online, \d+ offline, \d+ disabled\)$/m)
  const j = json(await fg('status'))
  t.true(j.readiness.ready)
  t.is(typeof j.devices.total, 'number')
})

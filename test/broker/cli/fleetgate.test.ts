// The `fleetgate` command against a real broker and PostgreSQL, run as a
// child process: help on every command, exit codes (2 usage, 3 not found,
// 4 auth), the device lifecycle, config, commands answered by a real MQTT
// device, tokens, telemetry, and that the token never shows in its output.
import test from 'ava'
import { spawnSync } from 'node:child_process'
import { writeFileSync, mkdtempSync, rmSync } from 'node:fs'
import { createServer, type AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Command } from 'commander'
import { buildProgram } from '../../../broker/cli/fleetgate/program.js'
import { api, connectDevice, connackCode, startTestBroker, TEST_ADMIN_TOKEN, type TestBroker } from '../../helpers/broker.js'
import { brokerEnv, ENTRY, fleetgate, json, limited, ok } from './fleetgate-cli.js'

let broker: TestBroker
let env: Record<string, string | undefined>
test.before(async () => {
  broker = await startTestBroker({ API_RATE_LIMIT_PER_MINUTE: 100_000 })
  env = brokerEnv(broker)
})
test.after.always(async () => { await broker?.close(); await broker?.db.drop() })

const fg = async (...args: string[]) => await fleetgate(args, env)

/** A port nothing listens on: one the OS just gave out and took back. */
async function closedPort (): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as AddressInfo).port
  await new Promise((resolve) => server.close(resolve))
  return port
}

function allCommands (cmd: Command): Command[] {
  return cmd.commands.flatMap((c) => [c, ...allCommands(c)])
}

/** Every command path ['devices', 'ls'], …, from the program itself, and whether it is a leaf (runs something). */
function commandPaths (cmd: Command, prefix: string[] = []): Array<{ path: string[], leaf: boolean }> {
  return cmd.commands.flatMap((c) => [{ path: [...prefix, c.name()], leaf: c.commands.length === 0 }, ...commandPaths(c, [...prefix, c.name()])])
}

test.serial('--help of every command and subcommand prints its usage, options and examples; as a process it exits 0', async (t) => {
  t.timeout(120_000)
  const paths = [{ path: [] as string[], leaf: false }, ...commandPaths(buildProgram())]
  t.true(paths.length > 40, `${paths.length} commands`)
  // Every command, in this process: what commander prints for --help.
  for (const { path, leaf } of paths) {
    const name = ['fleetgate', ...path].join(' ')
    let out = ''
    const program = buildProgram((s) => { out += s })
    program.configureOutput({ writeOut: (s) => { out += s } })
    for (const c of allCommands(program)) c.configureOutput({ writeOut: (s) => { out += s }, writeErr: (s) => { out += s } })
    const err = await program.parseAsync(['node', 'fleetgate', ...path, '--help']).then(() => undefined, (e: { code?: string }) => e)
    t.is(err?.code, 'commander.helpDisplayed', name)
    t.true(out.startsWith(`Usage: ${name}`), `${name}: ${out.slice(0, 80)}`)
    // A description, the global connection options, and examples on every command that runs something.
    t.regex(out.split('\n')[2] ?? '', /^[A-Z]/, name)
    t.regex(out, /--token-file <path>/, name)
    if (leaf) t.regex(out, /Examples?:\n {2}\$ .*fleetgate /, name)
  }
  // As a process (the program, each group and a few leaves): exit 0, help on stdout only.
  const spawned = paths.filter((p) => p.path.length <= 1 || ['devices ls', 'commands send', 'rollouts watch'].includes(p.path.join(' ')))
  const runs = await limited(spawned, 2, async ({ path }) => ({ path, r: await fleetgate([...path, '--help'], {}) }))
  for (const { path, r } of runs) {
    const name = ['fleetgate', ...path].join(' ')
    t.is(r.code, 0, name)
    t.is(r.stderr, '', name)
    t.true(r.stdout.startsWith(`Usage: ${name}`), name)
  }
  // The top-level help names the exit codes and warns about --token.
  const top = runs[0]!.r.stdout
  t.regex(top, /Exit codes: 0 ok · 1 failed .* 2 usage .* 3 not found \(404\) ·\n4 auth/s)
  t.regex(top, /Prefer those to --token:\na token on the command line is visible to every user in the process list/)
})

test.serial('usage errors exit 2 and name the flag, before any request', async (t) => {
  const cases: Array<[string[], RegExp]> = [
    [['devices', 'ls', '--selector', 'site'], /^error: --selector: expected key=value\[,key=value…\], got 'site'\n/],
    [['devices', 'ls', '--limit', '0'], /^error: --limit: expected an integer from 1 to 1000, got '0'\n/],
    [['devices', 'ls', '--output', 'xml'], /option '-o, --output <format>' argument 'xml' is invalid/],
    [['devices', 'lss'], /unknown command 'lss'[\s\S]*Did you mean ls\?/],
    [['devices'], /Usage: fleetgate devices/],
    [['devices', 'get'], /missing required argument 'id'/],
    [['devices', 'ls', '--online', '--offline'], /^error: --online: give --online or --offline, not both/],
    [['config', 'set', 'x', '{"a":'], /^error: <json>: expected a JSON object/],
    [['commands', 'send', 'x', 'reboot', '--ttl', 'soon'], /^error: --ttl: expected an integer/],
    [['telemetry', 'get', 'x', '--from', 'yesterday'], /^error: --from: expected an ISO 8601 time .* or a duration back from now .*, got 'yesterday'/],
    [['tokens', 'create', '--name', 'x', '--scope', 'root'], /^error: --scope: expected one of read, write, admin, got 'root'/],
    [['tokens', 'create'], /required option '--name <name>' not specified/],
    [['--url', 'ftp://host', 'devices', 'ls'], /^error: --url: expected an http:\/\/ or https:\/\/ URL/],
    [['rollouts', 'create', '--selector', 'site=a'], /^error: --config: give either --config <json> or --command <name>/],
    [['--token-file', '/no/such/file', 'devices', 'ls'], /^error: --token-file: cannot read \/no\/such\/file \(ENOENT\)/]
  ]
  const runs = await limited(cases, 2, async ([args]) => await fg(...args))
  cases.forEach(([args, message], i) => {
    const r = runs[i]!
    t.is(r.code, 2, args.join(' '))
    t.is(r.stdout, '', args.join(' '))
    t.regex(r.stderr, message, args.join(' '))
  })
  t.is((await fleetgate(['devices', 'ls'], { ...env, FLEETGATE_URL: 'localhost:8080' })).stderr.split('\n')[0], "error: FLEETGATE_URL: expected an http:// or https:// URL such as http://127.0.0.1:8080, got 'localhost:8080'")
})

test.serial('an unknown device or command exits 3 with the API problem as "error <code>: <detail>"', async (t) => {
  const [dev, cmd, cfg] = await Promise.all([
    fg('devices', 'get', 'no-such-device'),
    fg('commands', 'get', '00000000-0000-4000-8000-000000000000'),
    fg('config', 'set', 'no-such-device', '{"a":1}')
  ])
  t.is(dev.code, 3)
  t.is(dev.stderr, 'error not_found: device no-such-device not found\n')
  t.is(dev.stdout, '')
  t.is(cmd.code, 3)
  t.regex(cmd.stderr, /^error not_found: /)
  t.is(cfg.code, 3)
})

test.serial('a bad, missing or too weak token exits 4; no token ever appears in the output of a failing command', async (t) => {
  const wrong = 'fgt_wrong-token-that-must-stay-secret-1234'
  const viaEnv = await fleetgate(['devices', 'ls'], { ...env, FLEETGATE_TOKEN: wrong })
  t.is(viaEnv.code, 4)
  t.regex(viaEnv.stderr, /^error unauthorized: .*\(check the token given by FLEETGATE_TOKEN, --token-file or --token\)\n$/)
  const viaFlag = await fleetgate(['--token', wrong, 'devices', 'get', 'x'], { FLEETGATE_URL: env.FLEETGATE_URL })
  t.is(viaFlag.code, 4)
  const none = await fleetgate(['devices', 'ls'], { FLEETGATE_URL: env.FLEETGATE_URL })
  t.is(none.code, 4)
  t.regex(none.stderr, /no token given: set FLEETGATE_TOKEN or use --token-file/)
  // A read token may not create: 403.
  const read = await api(broker.app, 'POST', '/v1/tokens', { name: 'reader', scopes: ['read'] })
  const weak = await fleetgate(['devices', 'create', 'tok-weak'], { ...env, FLEETGATE_TOKEN: read.body.token })
  t.is(weak.code, 4)
  t.regex(weak.stderr, /^error forbidden: /)
  // Failing with the real admin token: not found, a usage error after the token, an unreachable broker.
  const notFound = await fg('devices', 'get', 'nope')
  const usage = await fleetgate(['--token', TEST_ADMIN_TOKEN, 'devices', 'ls', '--selector', TEST_ADMIN_TOKEN], { FLEETGATE_URL: env.FLEETGATE_URL })
  const unreachable = await fleetgate(['devices', 'ls'], { FLEETGATE_URL: `http://127.0.0.1:${await closedPort()}`, FLEETGATE_TOKEN: TEST_ADMIN_TOKEN })
  t.is(usage.code, 2)
  t.is(unreachable.code, 1)
  t.regex(unreachable.stderr, /^error: cannot reach http:\/\/127\.0\.0\.1:\d+ \(ECONNREFUSED\) — is the broker running\? Set FLEETGATE_URL or --url\n$/)
  for (const [r, secret] of [[viaEnv, wrong], [viaFlag, wrong], [weak, read.body.token], [notFound, TEST_ADMIN_TOKEN], [usage, TEST_ADMIN_TOKEN], [unreachable, TEST_ADMIN_TOKEN]] as const) {
    t.false(r.stdout.includes(secret))
    t.false(r.stderr.includes(secret), r.stderr)
  }
  t.regex(usage.stderr, /got '\*\*\*'/)
  // --token-file: the token from a file, not from the command line.
  const dir = mkdtempSync(join(tmpdir(), 'fleetgate-token-'))
  try {
    writeFileSync(join(dir, 'token'), `${TEST_ADMIN_TOKEN}\n`, { mode: 0o600 })
    ok(t, await fleetgate(['--token-file', join(dir, 'token'), 'devices', 'ls'], { FLEETGATE_URL: env.FLEETGATE_URL }), '--token-file')
    ok(t, await fleetgate(['devices', 'ls'], { FLEETGATE_URL: env.FLEETGATE_URL, FLEETGATE_TOKEN_FILE: join(dir, 'token') }), 'FLEETGATE_TOKEN_FILE')
  } finally { rmSync(dir, { recursive: true, force: true }) }
})

test.serial('devices create → ls (table, json) → get → update → disable → enable → rotate-secret → delete', async (t) => {
  t.timeout(120_000)
  const created = await fg('devices', 'create', 'life-1', '--name', 'Boiler 1', '--label', 'site=berlin', '-o', 'json')
  ok(t, created, 'create')
  const { id, secret } = json(created)
  t.is(id, 'life-1')
  // The printed secret is the device's MQTT password.
  await (await connectDevice(broker.url, id, secret)).endAsync()
  // Table: a note for people on stderr, the secret on stdout only.
  const tableCreate = await fg('devices', 'create', 'life-2', '--label', 'site=berlin', '--label', 'tier=edge', '-o', 'table')
  ok(t, tableCreate, 'create table')
  t.regex(tableCreate.stdout, /^id {6}life-2\nsecret {2}\S{20,}\n$/)
  t.regex(tableCreate.stderr, /shown only now/)

  const table = await fg('devices', 'ls', '--selector', 'site=berlin', '-o', 'table')
  ok(t, table, 'ls')
  const lines = table.stdout.trimEnd().split('\n')
  t.is(lines.length, 3)
  t.regex(lines[0]!, /^ID {6}NAME {6}LABELS {17}STATUS {3}CONFIG {2}LAST SEEN$/)
  t.regex(lines[1]!, /^life-1 {2}Boiler 1 {2}site=berlin {12}offline {2}none {4}(-|\d+s ago)$/)
  t.regex(lines[2]!, /^life-2 {2}- {9}site=berlin,tier=edge {2}offline {2}none {4}-$/)
  // Columns line up: each header starts where its values start.
  for (const h of ['NAME', 'LABELS', 'STATUS', 'CONFIG']) t.is(lines[1]![lines[0]!.indexOf(h) - 1], ' ')

  const listed = json(await fg('devices', 'ls', '--selector', 'site=berlin', '-o', 'json'))
  t.deepEqual(listed.items.map((d: { id: string }) => d.id), ['life-1', 'life-2'])
  t.is(listed.nextCursor, null)
  const nd = (await fg('devices', 'ls', '--selector', 'site=berlin', '-o', 'ndjson')).stdout.trim().split('\n').map((l) => JSON.parse(l).id)
  t.deepEqual(nd, ['life-1', 'life-2'])
  // Default without a terminal: json. A page hint goes to stderr.
  const paged = await fg('devices', 'ls', '--selector', 'site=berlin', '--limit', '1')
  t.is(json(paged).items.length, 1)
  t.truthy(json(paged).nextCursor)
  const all = await fg('devices', 'ls', '--selector', 'site=berlin', '--limit', '1', '--all')
  t.deepEqual(json(all).items.map((d: { id: string }) => d.id), ['life-1', 'life-2'])

  // The other filters reach the API under its names (idPrefix, configState, online).
  t.deepEqual(json(await fg('devices', 'ls', '--id-prefix', 'life-', '--config-state', 'none', '--offline')).items.map((d: { id: string }) => d.id), ['life-1', 'life-2'])
  t.deepEqual(json(await fg('devices', 'ls', '--id-prefix', 'life-', '--online')).items, [])

  const got = json(await fg('devices', 'get', 'life-1'))
  t.is(got.name, 'Boiler 1')
  t.regex((await fg('devices', 'get', 'life-1', '-o', 'table')).stdout, /^id {9}life-1\nname {7}Boiler 1\nlabels {5}site=berlin\nstatus {5}offline\n/)

  const updated = await fg('devices', 'update', 'life-1', '--name', 'Boiler 2', '--label', 'tier=edge')
  ok(t, updated, 'update')
  t.deepEqual(json(updated).labels, { site: 'berlin', tier: 'edge' })
  t.is(json(updated).name, 'Boiler 2')
  t.deepEqual(json(await fg('devices', 'update', 'life-1', '--remove-label', 'tier', '--clear-name')).labels, { site: 'berlin' })
  t.is((await api(broker.app, 'GET', '/v1/devices/life-1')).body.name, null, '--clear-name removes the name')

  const disabled = await fg('devices', 'disable', 'life-1')
  ok(t, disabled, 'disable')
  t.true(json(disabled).disabled)
  t.is(await connackCode(broker.url, { clientId: id, username: id, password: secret }), 5)
  ok(t, await fg('devices', 'enable', 'life-1'), 'enable')
  t.false((await api(broker.app, 'GET', '/v1/devices/life-1')).body.disabled)

  const rotated = json(await fg('devices', 'rotate-secret', 'life-1'))
  t.is(rotated.id, 'life-1')
  t.not(rotated.secret, secret)
  t.is(await connackCode(broker.url, { clientId: id, username: id, password: secret }), 4)
  await (await connectDevice(broker.url, id, rotated.secret)).endAsync()

  // No terminal: a single delete needs no confirmation.
  const deleted = await fg('devices', 'delete', 'life-1')
  ok(t, deleted, 'delete')
  t.deepEqual(json(deleted), { id: 'life-1', deleted: true })
  t.is((await fg('devices', 'get', 'life-1')).code, 3)
  t.is((await fg('devices', 'delete', 'life-1')).code, 3)
})

test.serial('devices create --count registers many and prints each secret once; long values are cut with an ellipsis in tables', async (t) => {
  const bulk = await fg('devices', 'create', '--count', '3', '--prefix', 'many', '--label', 'batch=b1', '-o', 'ndjson')
  ok(t, bulk, 'bulk')
  const rows = bulk.stdout.trim().split('\n').map((l) => JSON.parse(l))
  t.deepEqual(rows.map((r) => r.id), ['many-1', 'many-2', 'many-3'])
  t.true(rows.every((r) => typeof r.secret === 'string' && r.secret.length > 20))
  const long = 'N'.repeat(150)
  ok(t, await fg('devices', 'create', 'long-name', '--name', long, '--label', 'batch=long'), 'long')
  const table = (await fg('devices', 'ls', '--selector', 'batch=long', '-o', 'table')).stdout
  t.regex(table, /long-name {2}N{23}… {2}batch=long/)
  t.false(table.includes(long))
})

test.serial('devices disable/enable/delete --selector act in bulk (POST /v1/devices/bulk-actions); delete by selector without a terminal needs --yes', async (t) => {
  for (const id of ['grp-1', 'grp-2', 'grp-3']) await api(broker.app, 'POST', '/v1/devices', { id, labels: { grp: 'g1' } })
  await api(broker.app, 'POST', '/v1/devices', { id: 'grp-other', labels: { grp: 'g2' } })
  const disabled = await fg('devices', 'disable', '--selector', 'grp=g1')
  ok(t, disabled, 'bulk disable')
  t.like(json(disabled), { action: 'disable', matched: 3, changed: 3 })
  t.true((await api(broker.app, 'GET', '/v1/devices/grp-2')).body.disabled)
  t.false((await api(broker.app, 'GET', '/v1/devices/grp-other')).body.disabled)
  const table = await fg('devices', 'enable', 'grp-1', 'grp-2', '-o', 'table')
  ok(t, table, 'bulk enable by ids')
  t.is(table.stdout, 'enabled  2 of 2 matching devices\n')
  const refused = await fg('devices', 'delete', '--selector', 'grp=g1')
  t.is(refused.code, 2)
  t.regex(refused.stderr, /^error: --yes: deleting by --selector without a terminal to confirm on needs --yes/)
  t.is((await api(broker.app, 'GET', '/v1/devices/grp-1')).status, 200)
  const deleted = await fg('devices', 'delete', '--selector', 'grp=g1', '--yes')
  ok(t, deleted, 'bulk delete')
  t.like(json(deleted), { action: 'delete', matched: 3, changed: 3 })
  t.is((await api(broker.app, 'GET', '/v1/devices/grp-3')).status, 404)
  t.is((await api(broker.app, 'GET', '/v1/devices/grp-other')).status, 200)
})

test.serial('on a terminal, delete asks first: n keeps the device (exit 1), y deletes; a selector names how many match', async (t) => {
  // A pseudo-terminal from util-linux script(1): stdin and stderr are TTYs there.
  if (spawnSync('script', ['--version']).status !== 0) return t.pass('script(1) is not installed')
  for (const id of ['tty-1', 'tty-2', 'tty-3']) await api(broker.app, 'POST', '/v1/devices', { id, labels: { room: 'tty' } })
  const onTty = async (args: string, answer: string) => await fleetgate(['-c', `${process.execPath} --import tsx ${ENTRY} ${args}`, '/dev/null'], env, `${answer}\n`, 'script', ['-qe'])
  const no = await onTty('devices delete tty-1', 'n')
  t.is(no.code, 1, no.stdout)
  t.regex(no.stdout, /Delete device tty-1\? Their credentials, configs, commands and telemetry go with them\. \[y\/N\]/)
  t.regex(no.stdout, /error: not deleted \(answer y to delete, or pass --yes\)/)
  t.is((await api(broker.app, 'GET', '/v1/devices/tty-1')).status, 200)
  const yes = await onTty('devices delete tty-1', 'y')
  t.is(yes.code, 0, yes.stdout)
  t.is((await api(broker.app, 'GET', '/v1/devices/tty-1')).status, 404)
  const bulk = await onTty('devices delete --selector room=tty', 'yes')
  t.is(bulk.code, 0, bulk.stdout)
  t.regex(bulk.stdout, /Delete 2 devices matching room=tty\?/)
  t.is((await api(broker.app, 'GET', '/v1/devices/tty-3')).status, 404)
})

test.serial('config set → get → history → rollback', async (t) => {
  await api(broker.app, 'POST', '/v1/devices', { id: 'cfg-1' })
  const v1 = await fg('config', 'set', 'cfg-1', '{"intervalSeconds":10}')
  ok(t, v1, 'set v1')
  t.deepEqual(json(v1), { version: 1, config: { intervalSeconds: 10 }, delivered: false })
  ok(t, await fg('config', 'set', 'cfg-1', '{"intervalSeconds":20}', '--if-version', '1'), 'set v2')
  const conflict = await fg('config', 'set', 'cfg-1', '{"intervalSeconds":30}', '--if-version', '1')
  t.is(conflict.code, 1)
  t.regex(conflict.stderr, /^error version_conflict: /)
  const got = await fg('config', 'get', 'cfg-1', '-o', 'table')
  ok(t, got, 'get')
  t.regex(got.stdout, /^state {5}pending\ndesired {3}v2 \(\d+s ago\)\nconfig {4}\{"intervalSeconds":20\}\nreported {2}-\n$/)
  t.is(json(await fg('config', 'get', 'cfg-1')).desired.version, 2)

  const history = await fg('config', 'history', 'cfg-1')
  ok(t, history, 'history')
  t.deepEqual(json(history).items.map((h: { version: number }) => h.version), [2, 1])
  const historyTable = (await fg('config', 'history', 'cfg-1', '-o', 'table')).stdout.split('\n')
  t.regex(historyTable[0]!, /^VERSION {2}SET +BY +SOURCE {2}CONFIG$/)
  t.regex(historyTable[1]!, /^2 .*api .*\{"intervalSeconds":20\}$/)

  const rolledBack = await fg('config', 'rollback', 'cfg-1', '--to', '1')
  ok(t, rolledBack, 'rollback')
  t.like(json(rolledBack), { version: 3, config: { intervalSeconds: 10 } })
  t.like((await api(broker.app, 'GET', '/v1/devices/cfg-1/config')).body.desired, { version: 3, config: { intervalSeconds: 10 } })
  t.is((await fg('config', 'rollback', 'cfg-1', '--to', '99')).code, 3)
})

test.serial('commands send --wait returns when a real MQTT device answers; a failed command exits 1; ls and cancel', async (t) => {
  t.timeout(60_000)
  const dev = (await api(broker.app, 'POST', '/v1/devices', { id: 'cmd-1' })).body
  const client = await connectDevice(broker.url, dev.id, dev.secret)
  try {
    // The device answers each command: setLed succeeds, explode fails.
    client.on('message', (topic, payload) => {
      const cmd = JSON.parse(payload.toString()) as { name?: string }
      const status = cmd.name === 'explode' ? 'failed' : 'succeeded'
      void client.publishAsync(`${topic}/result`, JSON.stringify({ status, result: { echo: cmd.name } }), { qos: 1 })
    })
    await client.subscribeAsync(`devices/${dev.id}/commands/+`, { qos: 1 })
    const sent = await fg('commands', 'send', 'cmd-1', 'setLed', '--params', '{"on":true}', '--wait', '20')
    ok(t, sent, 'send --wait')
    t.like(json(sent), { deviceId: 'cmd-1', name: 'setLed', params: { on: true }, status: 'succeeded', result: { echo: 'setLed' } })
    const failed = await fg('commands', 'send', 'cmd-1', 'explode', '--wait', '20')
    t.is(failed.code, 1)
    t.is(json(failed).status, 'failed')
    t.regex(failed.stderr, /^error: command [0-9a-f-]{36} failed\n$/)
    const list = await fg('commands', 'ls', 'cmd-1', '-o', 'table')
    ok(t, list, 'ls')
    t.regex(list.stdout, /^ID +NAME +STATUS +CREATED +COMPLETED +RESULT\n[0-9a-f-]{36} {2}setLed +succeeded .*\{"echo":"setLed"\}\n[0-9a-f-]{36} {2}explode +failed /)
    t.is(json(await fg('commands', 'get', json(sent).id)).status, 'succeeded')
  } finally {
    await client.endAsync()
  }
  // Offline: the command stays queued; --wait runs out (exit 1) and cancel ends it.
  const queued = await fg('commands', 'send', 'cmd-1', 'reboot', '--wait', '1')
  t.is(queued.code, 1)
  t.regex(queued.stderr, /is still queued \(the wait ran out/)
  const cancelled = await fg('commands', 'cancel', json(queued).id)
  ok(t, cancelled, 'cancel')
  t.is(json(cancelled).status, 'cancelled')
  t.is((await fg('commands', 'cancel', json(queued).id)).code, 1)
  t.deepEqual(json(await fg('commands', 'ls', 'cmd-1', '--status', 'cancelled')).items.map((c: { name: string }) => c.name), ['reboot'])
})

test.serial('tokens create → ls → revoke: the created token works until revoked', async (t) => {
  const created = await fg('tokens', 'create', '--name', 'ci-cli', '--scope', 'write')
  ok(t, created, 'create')
  const tok = json(created)
  t.regex(tok.token, /^fgt_/)
  t.deepEqual(tok.scopes, ['write'])
  const withIt = await fleetgate(['devices', 'create', 'tok-made'], { ...env, FLEETGATE_TOKEN: tok.token })
  ok(t, withIt, 'the new token creates a device')
  const ls = await fg('tokens', 'ls', '-o', 'table')
  ok(t, ls, 'ls')
  t.regex(ls.stdout, new RegExp(`^${tok.id} +ci-cli +write +\\d+[sm] ago +\\d+[sm] ago +-$`, 'm'))
  t.false(ls.stdout.includes(tok.token))
  ok(t, await fg('tokens', 'revoke', tok.id), 'revoke')
  const after = await fleetgate(['devices', 'ls'], { ...env, FLEETGATE_TOKEN: tok.token })
  t.is(after.code, 4)
  t.false(after.stderr.includes(tok.token))
  t.is((await fg('tokens', 'revoke', 'tok_nope')).code, 3)
})

test.serial('telemetry get lists stored readings (table and json, numbers exact); aggregate per bucket', async (t) => {
  const dev = (await api(broker.app, 'POST', '/v1/devices', { id: 'tel-1' })).body
  const client = await connectDevice(broker.url, dev.id, dev.secret)
  const ts = new Date(Date.now() - 60_000).toISOString()
  // QoS 1 is acknowledged after commit: stored once publishAsync resolves.
  await client.publishAsync('devices/tel-1/telemetry', `{"ts":"${ts}","temp":21.5,"big":9007199254740993}`, { qos: 1 })
  await client.endAsync()
  const r = await fg('telemetry', 'get', 'tel-1', '--from', '10m')
  ok(t, r, 'get')
  t.regex(r.stdout, /"big": ?9007199254740993[,}]/)
  t.like(JSON.parse(r.stdout).items[0], { ts, payload: { temp: 21.5 } })
  const table = await fg('telemetry', 'get', 'tel-1', '-o', 'table')
  t.regex(table.stdout, new RegExp(`^TS +RECEIVED +PAYLOAD\n${ts.replace(/\./g, '\\.')} +\\S+Z +\\{.*"temp": ?21\\.5`))
  const agg = await fg('telemetry', 'aggregate', 'tel-1', '--field', 'temp', '--bucket', '1h', '--from', '10m')
  ok(t, agg, 'aggregate')
  t.like(json(agg), { field: 'temp', bucket: '1h', items: [{ count: 1, min: 21.5, max: 21.5, avg: 21.5 }] })
  t.regex((await fg('telemetry', 'agg', 'tel-1', '--field', 'temp', '--bucket', '1h', '--from', '10m', '-o', 'table')).stdout, /^START +COUNT +MIN +MAX +AVG\n\S+Z +1 +21\.5 +21\.5 +21\.5\n$/)
  const none = await fg('telemetry', 'get', 'tel-1', '--from', '2020-01-01T00:00:00Z', '--to', '2020-01-02T00:00:00Z', '-o', 'table')
  ok(t, none, 'empty')
  t.is(none.stdout, '')
  t.is(none.stderr, '(none)\n')
})

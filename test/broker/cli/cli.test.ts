// The command-line tools, run as a user runs them, against a real database.
import test from 'ava'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { createTestDatabase } from '../../helpers/database.js'
import { startTestBroker, connectDevice, api } from '../../helpers/broker.js'

const run = promisify(execFile)
const cli = (script: string, args: string[], env: Record<string, string>) =>
  run(process.execPath, ['--import', 'tsx', script, ...args], { env: { ...process.env, ...env } })

test('device:create prints one JSON line with working credentials; token:create gives a working token', async (t) => {
  const db = await createTestDatabase()
  const created = await cli('broker/cli/create-device-cli.ts', ['--id', 'cli-1', '--label', 'site=x'], { DATABASE_URL: db.url })
  const lines = created.stdout.trim().split('\n')
  t.is(lines.length, 1)
  const dev = JSON.parse(lines[0]!)
  t.is(dev.id, 'cli-1')
  const tok = JSON.parse((await cli('broker/cli/create-token-cli.ts', ['--name', 'ops', '--scope', 'read'], { DATABASE_URL: db.url })).stdout)
  t.regex(tok.token, /^fgt_/)
  const broker = await startTestBroker({ ADMIN_TOKEN: undefined }, db)
  const client = await connectDevice(broker.url, dev.id, dev.secret)
  await client.endAsync()
  const listed = await api(broker.app, 'GET', '/v1/devices/cli-1', undefined, tok.token)
  t.is(listed.status, 200)
  t.deepEqual(listed.body.labels, { site: 'x' })
  await broker.close()
  const dup = await cli('broker/cli/create-device-cli.ts', ['--id', 'cli-1'], { DATABASE_URL: db.url }).catch((e: { code: number, stderr: string }) => e)
  t.is((dup as { code: number }).code, 1)
  t.regex((dup as { stderr: string }).stderr, /device_exists/)
  const bad = await cli('broker/cli/create-device-cli.ts', ['--label', 'novalue'], { DATABASE_URL: db.url }).catch((e: { code: number, stderr: string }) => e)
  t.is((bad as { code: number }).code, 2)
  await db.drop()
})

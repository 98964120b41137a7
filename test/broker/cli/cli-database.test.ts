// The command-line tools say which database they use and do not create a new
// embedded one unasked (issue "Configuration errors", item 3: device:create
// without the broker's DATA_DIR printed a secret the broker never accepts).
import test from 'ava'
import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { createTestDatabase } from '../../helpers/database.js'

const run = promisify(execFile)

const TOOLS = [
  { name: 'device:create', script: 'broker/cli/create-device-cli.ts', args: ['--id', 'db-1'] },
  { name: 'token:create', script: 'broker/cli/create-token-cli.ts', args: ['--name', 'ops'] },
  { name: 'migrate', script: 'broker/cli/migrate-cli.ts', args: [] }
]

/** The environment of the test without any database setting, plus `env`. */
function cliEnv (env: Record<string, string>): NodeJS.ProcessEnv {
  const { DATABASE_URL: _u, DATA_DIR: _d, ...rest } = process.env
  return { ...rest, LOG_LEVEL: 'warn', ...env }
}

async function cli (script: string, args: string[], env: Record<string, string>): Promise<{ code: number, stdout: string, stderr: string }> {
  return await run(process.execPath, ['--import', 'tsx', script, ...args], { env: cliEnv(env) })
    .then((r) => ({ code: 0, ...r }), (e: { code: number, stdout: string, stderr: string }) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }))
}

test('without DATABASE_URL and with no data in DATA_DIR, each tool refuses (exit 2) and creates nothing', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'fleetgate-cli-'))
  const dataDir = join(dir, 'data')
  try {
    for (const tool of TOOLS) {
      const r = await cli(tool.script, tool.args, { DATA_DIR: dataDir })
      t.is(r.code, 2, tool.name)
      t.is(r.stdout, '', tool.name)
      t.is(r.stderr, `${tool.name}: no fleetgate data in ${dataDir} — start the broker first (npm start), set DATA_DIR to the broker's, or set DATABASE_URL; --init creates a new, empty database there\n`, tool.name)
    }
    t.false(existsSync(dataDir))
    // A relative DATA_DIR is shown as given and resolved.
    const relative = await cli('broker/cli/create-device-cli.ts', [], { DATA_DIR: './no-such-fleetgate-data' })
    t.regex(relative.stderr, new RegExp(`no fleetgate data in ${join(process.cwd(), 'no-such-fleetgate-data')} \\(DATA_DIR=\\./no-such-fleetgate-data\\) —`))
    t.false(existsSync('./no-such-fleetgate-data'))
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
})

test('each tool names the DATABASE_URL it used, without the password', async (t) => {
  const db = await createTestDatabase()
  const url = new URL(db.url)
  url.password = 'not-for-the-terminal'
  const before = new URL(db.url)
  try {
    for (const tool of TOOLS) {
      const r = await cli(tool.script, tool.args, { DATABASE_URL: db.url })
      t.is(r.code, 0, `${tool.name}: ${r.stderr}`)
      t.true(r.stderr.startsWith(`${tool.name}: using PostgreSQL postgres://${before.username}@${before.host}/${db.name} (DATABASE_URL)\n`), r.stderr)
      if (before.password) t.false(r.stderr.includes(before.password), tool.name)
    }
    const secretUrl = await cli('broker/cli/create-token-cli.ts', ['--name', 'x'], { DATABASE_URL: url.toString() })
    t.false(secretUrl.stderr.includes('not-for-the-terminal'))
  } finally {
    await db.drop()
  }
})

test('--init creates the embedded database and says where; later runs use it without --init', async (t) => {
  // DATA_DIR itself (run as root, PostgreSQL's own user must traverse it).
  const dir = await mkdtemp(join(tmpdir(), 'fleetgate-cli-'))
  const dataDir = dir
  try {
    const init = await cli('broker/cli/migrate-cli.ts', ['--init'], { DATA_DIR: dataDir })
    t.is(init.code, 0, init.stderr)
    t.true(init.stderr.startsWith(`migrate: using embedded PostgreSQL in ${dataDir}\n`), init.stderr)
    const created = await cli('broker/cli/create-device-cli.ts', ['--id', 'emb-1'], { DATA_DIR: dataDir })
    t.is(created.code, 0, created.stderr)
    // The first line names the database (a loaded machine may add pool
    // warnings while the command's own server stops).
    t.true(created.stderr.startsWith(`device:create: using embedded PostgreSQL in ${dataDir}\n`), created.stderr)
    t.is(JSON.parse(created.stdout).id, 'emb-1')
    // Same database: the device is there.
    const again = await cli('broker/cli/create-device-cli.ts', ['--id', 'emb-1'], { DATA_DIR: dataDir })
    t.is(again.code, 1)
    t.regex(again.stderr, /device_exists/)
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
})

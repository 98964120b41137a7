// `npm test`: one real PostgreSQL for the whole run (embedded, in a temporary
// directory, or TEST_DATABASE_URL), a migrated template database that each
// test file clones (test/helpers/database.ts), then ava.
import { spawn, spawnSync } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pg from 'pg'
import { createLogger } from '../broker/logger.js'
import { startEmbeddedPostgres } from '../broker/embedded-postgres.js'
import { createPool } from '../broker/database-pool.js'
import { migrate } from '../broker/migrator.js'
import { hasRedisServer } from '../simulator/redis-server.js'
import { TEMPLATE_DB, withDatabaseName } from './helpers/database.js'

// The cluster tests need a real redis-server. On a fresh Debian machine as
// root (as in CI) it is installed here; otherwise the run stops saying how.
if (!hasRedisServer()) {
  const canInstall = process.getuid?.() === 0 && spawnSync('apt-get', ['--version'], { stdio: 'ignore' }).status === 0
  if (canInstall) {
    console.error('redis-server not found: installing the Debian package redis-server for the cluster tests…')
    spawnSync('sh', ['-c', 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server'], { stdio: 'inherit' })
  }
  if (!hasRedisServer()) {
    console.error('The cluster tests need redis-server on the PATH (Debian/Ubuntu: apt-get install redis-server; macOS: brew install redis).')
    process.exit(2)
  }
}

const log = createLogger({ level: process.env.TEST_LOG_LEVEL ?? 'warn', destination: process.stderr })
let dir: string | undefined
let adminUrl = process.env.TEST_DATABASE_URL
let embedded
if (!adminUrl) {
  dir = await mkdtemp(join(tmpdir(), 'fleetgate-test-'))
  embedded = await startEmbeddedPostgres({ dataDir: dir, log, settings: { fsync: 'off', synchronous_commit: 'off', full_page_writes: 'off' } })
  adminUrl = embedded.url
}

const admin = new pg.Client({ connectionString: adminUrl })
await admin.connect()
await admin.query(`DROP DATABASE IF EXISTS ${TEMPLATE_DB}`)
await admin.query(`CREATE DATABASE ${TEMPLATE_DB}`)
await admin.end()
const pool = createPool({ url: withDatabaseName(adminUrl, TEMPLATE_DB), max: 2, statementTimeoutMs: 60_000, log })
await migrate(pool, log)
await pool.end()

const ava = spawn(process.execPath, [join('node_modules', 'ava', 'entrypoints', 'cli.mjs'), ...process.argv.slice(2)], {
  stdio: 'inherit',
  // FLEETGATE_TEST_RUN_ID: names this run's cross-process locks (test/helpers/exclusive.ts).
  env: { ...process.env, FLEETGATE_TEST_ADMIN_URL: adminUrl, FLEETGATE_TEST_RUN_ID: `${process.pid}-${Date.now()}` }
})
for (const s of ['SIGINT', 'SIGTERM'] as const) process.on(s, () => ava.kill(s))
const code = await new Promise<number>((resolve) => ava.on('exit', (c, sig) => resolve(c ?? (sig ? 1 : 0))))
await embedded?.stop()
if (dir) await rm(dir, { recursive: true, force: true })
process.exit(code)

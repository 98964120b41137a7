// `npm run -s token:create -- --name ci --scope write` — creates an operator
// API token and prints {"id":…,"token":…,"scopes":[…]} as one JSON line (the
// token is shown only here). For bootstrapping without ADMIN_TOKEN, and for
// scripts; with a running broker `fleetgate tokens create` does the same
// through the API (audited).
import { parseArgs } from 'node:util'
import { createLogger } from '../logger.js'
import { withDatabase } from '../database-target.js'
import { cliConfig } from './cli-database.js'
import { createTokenStore, SCOPES, type Scope } from '../../devices/token-store.js'

function fail (message: string, code = 2): never {
  process.stderr.write(`token:create: ${message}\n`)
  process.exit(code)
}

const usage = 'usage: npm run -s token:create -- --name NAME [--scope read|write|admin]… [--init]\n' +
  '  Works on the database directly (no running broker, no ADMIN_TOKEN needed): for the first token.\n' +
  '  With a running broker and an admin token: fleetgate tokens create --name NAME --scope SCOPE\n' +
  '  --scope  read (default), write or admin; repeatable\n' +
  '  --init   without DATABASE_URL, create a new embedded database in DATA_DIR if it has none'

let args
try {
  args = parseArgs({ options: { name: { type: 'string' }, scope: { type: 'string', multiple: true }, init: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } }, strict: true }).values
} catch (err) { fail(`${(err as Error).message}\n${usage}`) }
if (args.help) { process.stdout.write(usage + '\n'); process.exit(0) }
if (!args.name) fail(`--name is required\n${usage}`)
const scopes = (args.scope ?? ['read']) as Scope[]
for (const s of scopes) if (!SCOPES.includes(s)) fail(`--scope must be one of ${SCOPES.join(', ')}, got ${JSON.stringify(s)}`)

const config = cliConfig('token:create', args.init ?? false, fail)
const log = createLogger({ level: config.LOG_LEVEL === 'info' ? 'warn' : config.LOG_LEVEL, destination: process.stderr })
try {
  await withDatabase(config, log, async (pool) => {
    const t = await createTokenStore(pool).create(args.name!, [...new Set(scopes)])
    process.stdout.write(JSON.stringify({ id: t.id, token: t.token, scopes: t.scopes }) + '\n')
  })
} catch (err) { fail((err as Error).stack ?? String(err), 1) }

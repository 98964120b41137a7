// `npm run -s token:create -- --name ci --scope write` — creates an operator
// API token and prints {"id":…,"token":…,"scopes":[…]} as one JSON line (the
// token is shown only here). For bootstrapping without ADMIN_TOKEN, and for scripts.
import { parseArgs } from 'node:util'
import { createLogger } from '../logger.js'
import { withDatabase } from '../database-target.js'
import { cliConfig } from './cli-database.js'
import { createTokenStore, SCOPES, type Scope } from '../../devices/token-store.js'

function fail (message: string, code = 2): never {
  process.stderr.write(`token:create: ${message}\n`)
  process.exit(code)
}

let args
try {
  args = parseArgs({ options: { name: { type: 'string' }, scope: { type: 'string', multiple: true }, init: { type: 'boolean' } }, strict: true }).values
} catch (err) { fail(`${(err as Error).message}\nusage: npm run -s token:create -- --name NAME --scope read|write|admin [--scope …] [--init]`) }
if (!args.name) fail('--name is required')
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

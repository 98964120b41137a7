// `npm run migrate [-- --init]` (also `fleetgate migrate`): apply pending
// migrations and exit.
import { parseArgs } from 'node:util'
import { runMigrations } from './run-migrations.js'

const usage = 'usage: npm run migrate [-- --init]\n  --init  without DATABASE_URL, create a new embedded database in DATA_DIR if it has none'

function fail (message: string, code = 2): never {
  process.stderr.write(`migrate: ${message}\n`)
  process.exit(code)
}

let args
try {
  args = parseArgs({ options: { init: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } }, strict: true }).values
} catch (err) { fail(`${(err as Error).message}\n${usage}`) }
if (args.help) { process.stdout.write(usage + '\n'); process.exit(0) }

await runMigrations('migrate', args.init ?? false, fail)

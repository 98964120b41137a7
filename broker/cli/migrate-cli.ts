// `npm run migrate [-- --init]`: apply pending migrations and exit (the Helm
// chart's pre-install/pre-upgrade Job runs the same, with DATABASE_URL).
import { parseArgs } from 'node:util'
import { createLogger } from '../logger.js'
import { withDatabase } from '../database-target.js'
import { cliConfig } from './cli-database.js'

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

const config = cliConfig('migrate', args.init ?? false, fail)
const log = createLogger({ level: config.LOG_LEVEL, pretty: process.stderr.isTTY, destination: process.stderr })
try {
  await withDatabase(config, log, async () => {})
  log.info('schema is current')
} catch (err) { fail((err as Error).stack ?? String(err), 1) }

// `npm run -s device:create -- --id sensor-1 [--name "Boiler 1"] [--label site=berlin]… [--init]`
// Creates a device and prints {"id":…,"secret":…} as one JSON line on stdout
// (the secret is shown only here, once). Logs, and the database used, go to stderr.
// `fleetgate devices create` does the same through the REST API (audited).
import { parseArgs } from 'node:util'
import { createLogger } from '../logger.js'
import { withDatabase } from '../database-target.js'
import { cliConfig } from './cli-database.js'
import { parseLabel } from '../../devices/labels.js'
import { createDeviceStore } from '../../devices/device-store.js'
import { DomainError } from '../../devices/domain-error.js'

const usage = 'usage: npm run -s device:create -- [--id ID] [--name NAME] [--label key=value]… [--count N --prefix P] [--init]\n' +
  '  Works on the database directly (no running broker or token needed).\n' +
  '  With a running broker: fleetgate devices create ID --name NAME --label key=value\n' +
  '  --init  without DATABASE_URL, create a new embedded database in DATA_DIR if it has none'

function fail (message: string, code = 2): never {
  process.stderr.write(`device:create: ${message}\n`)
  process.exit(code)
}

let args
try {
  args = parseArgs({
    options: {
      id: { type: 'string' },
      name: { type: 'string' },
      label: { type: 'string', multiple: true },
      count: { type: 'string' },
      prefix: { type: 'string' },
      init: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' }
    },
    strict: true
  }).values
} catch (err) { fail(`${(err as Error).message}\n${usage}`) }
if (args.help) { process.stdout.write(usage + '\n'); process.exit(0) }

const labels: Record<string, string> = {}
for (const l of args.label ?? []) {
  if (l.indexOf('=') <= 0) fail(`--label must be key=value, got ${JSON.stringify(l)}`)
  // The rules and messages of the REST API (devices/labels.ts).
  const label = parseLabel(l)
  if ('error' in label) fail(label.error)
  if (Object.hasOwn(labels, label.key)) fail(`--label ${label.key} is given more than once`)
  labels[label.key] = label.value
}
const count = args.count === undefined ? 1 : Number(args.count)
if (!Number.isInteger(count) || count < 1 || count > 1_000_000) fail('--count must be an integer from 1 to 1000000')
if (count > 1 && args.id) fail('--id and --count exclude each other; use --prefix')

const config = cliConfig('device:create', args.init ?? false, fail)
const log = createLogger({ level: config.LOG_LEVEL === 'info' ? 'warn' : config.LOG_LEVEL, destination: process.stderr })

try {
  await withDatabase(config, log, async (pool) => {
    const store = createDeviceStore(pool)
    for (let i = 0; i < count; i++) {
      const id = count > 1 ? `${args.prefix ?? 'dev'}-${i + 1}` : args.id
      const created = await store.create({ id, name: args.name ?? null, labels })
      process.stdout.write(JSON.stringify(created) + '\n')
    }
  })
} catch (err) {
  if (err instanceof DomainError) fail(`${err.code}: ${err.message}`, 1)
  fail((err as Error).stack ?? String(err), 1)
}

// `npm run -s device:create -- --id sensor-1 [--name "Boiler 1"] [--label site=berlin]…`
// Creates a device and prints {"id":…,"secret":…} as one JSON line on stdout
// (the secret is shown only here, once). Logs go to stderr.
import { parseArgs } from 'node:util'
import { loadConfig, ConfigError } from '../broker/config.js'
import { createLogger } from '../broker/logger.js'
import { withDatabase } from '../broker/database-target.js'
import { createDeviceStore } from './device-store.js'
import { DomainError } from './domain-error.js'

const usage = 'usage: npm run -s device:create -- [--id ID] [--name NAME] [--label key=value]… [--count N --prefix P]'

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
      help: { type: 'boolean', short: 'h' }
    },
    strict: true
  }).values
} catch (err) { fail(`${(err as Error).message}\n${usage}`) }
if (args.help) { process.stdout.write(usage + '\n'); process.exit(0) }

const labels: Record<string, string> = {}
for (const l of args.label ?? []) {
  const eq = l.indexOf('=')
  if (eq <= 0) fail(`--label must be key=value, got ${JSON.stringify(l)}`)
  labels[l.slice(0, eq)] = l.slice(eq + 1)
}
const count = args.count === undefined ? 1 : Number(args.count)
if (!Number.isInteger(count) || count < 1 || count > 1_000_000) fail('--count must be an integer from 1 to 1000000')
if (count > 1 && args.id) fail('--id and --count exclude each other; use --prefix')

let config
try { config = loadConfig() } catch (err) { fail(err instanceof ConfigError ? err.message : String(err)) }
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

// `npm run migrate`: apply pending migrations and exit (the Helm chart's
// pre-install/pre-upgrade Job runs the same).
import { loadConfig, ConfigError } from './config.js'
import { createLogger } from './logger.js'
import { withDatabase } from './database-target.js'

try {
  const config = loadConfig()
  const log = createLogger({ level: config.LOG_LEVEL, pretty: process.stderr.isTTY, destination: process.stderr })
  await withDatabase(config, log, async () => {})
  log.info('schema is current')
} catch (err) {
  process.stderr.write(`migrate: ${err instanceof ConfigError ? err.message : (err as Error).stack}\n`)
  process.exit(err instanceof ConfigError ? 2 : 1)
}

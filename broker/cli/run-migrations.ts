// Apply pending migrations and return: `npm run migrate` (migrate-cli.ts) and
// `fleetgate migrate` share it. The Helm chart's pre-install/pre-upgrade Job
// runs the same, with DATABASE_URL.
import { createLogger } from '../logger.js'
import { withDatabase } from '../database-target.js'
import { cliConfig } from './cli-database.js'

/** `tool` names the command in messages; `fail` prints under it and exits (2 for a usage error). */
export async function runMigrations (tool: string, init: boolean, fail: (message: string, code?: number) => never): Promise<void> {
  const config = cliConfig(tool, init, fail)
  const log = createLogger({ level: config.LOG_LEVEL, pretty: process.stderr.isTTY, destination: process.stderr })
  try {
    await withDatabase(config, log, async () => {})
    log.info('schema is current')
  } catch (err) { fail((err as Error).stack ?? String(err), 1) }
}

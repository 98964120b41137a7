// What the command-line tools (device:create, token:create, migrate) say about
// the database they work on, and their refusal to create a new embedded one
// unasked (issue "Configuration errors", item 3: device:create run without the
// broker's DATA_DIR silently created a new database and printed a secret the
// running broker never accepts). The broker itself still creates a fresh
// DATA_DIR on first start: the quick start depends on it.
import { resolve } from 'node:path'
import { ConfigError, loadConfig, unknownSettings, type Config } from '../config.js'
import { hasEmbeddedData } from '../embedded-postgres.js'

/** The flag that lets a tool create a new embedded database. */
export const INIT_FLAG = '--init'

/** The database, without secrets: `postgres://user@host:5432/db (DATABASE_URL)` or `embedded PostgreSQL in /abs/dir`. */
export function describeDatabase (config: Config): string {
  if (config.DATABASE_URL) {
    try {
      const url = new URL(config.DATABASE_URL)
      // The query may carry a password too (password=, sslpassword=): left out with it.
      const host = url.host || url.searchParams.get('host') || 'localhost'
      const user = url.username ? `${url.username}@` : ''
      return `PostgreSQL ${url.protocol}//${user}${host}${url.pathname} (DATABASE_URL)`
    } catch {
      return 'PostgreSQL at DATABASE_URL'
    }
  }
  return `embedded PostgreSQL in ${resolve(config.DATA_DIR)}`
}

/**
 * Why the tool must not go on (a usage error), or undefined: without
 * DATABASE_URL, DATA_DIR must already hold a database unless `init`.
 */
export function missingDatabase (config: Config, init: boolean): string | undefined {
  if (config.DATABASE_URL || init || hasEmbeddedData(config.DATA_DIR)) return undefined
  const dir = resolve(config.DATA_DIR)
  return `no fleetgate data in ${dir}${dir === config.DATA_DIR ? '' : ` (DATA_DIR=${config.DATA_DIR})`} — start the broker first (npm start), ` +
    `set DATA_DIR to the broker's, or set DATABASE_URL; ${INIT_FLAG} creates a new, empty database there`
}

/**
 * What every command-line tool does first: validate the environment (a bad
 * setting is a usage error), print the unknown-setting warnings, refuse a
 * DATA_DIR with no database unless `init`, and say which database it uses.
 * `fail` prints the message under the tool's name and exits.
 */
export function cliConfig (tool: string, init: boolean, fail: (message: string) => never): Config {
  let config: Config
  try { config = loadConfig() } catch (err) { return fail(err instanceof ConfigError ? err.message : String(err)) }
  for (const w of unknownSettings()) process.stderr.write(`${tool}: ${w.message}\n`)
  const missing = missingDatabase(config, init)
  if (missing) fail(missing)
  process.stderr.write(`${tool}: using ${describeDatabase(config)}\n`)
  return config
}

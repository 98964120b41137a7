// Resolves the database a command-line tool works on: DATABASE_URL when set,
// otherwise the embedded PostgreSQL under DATA_DIR (started for the duration
// of the command — stop the broker first, or give DATABASE_URL, since one data
// directory can be served by one server only).
import type { Config } from './config.js'
import type { Logger } from './logger.js'
import { startEmbeddedPostgres } from './embedded-postgres.js'
import { createPool, type Pool } from './database-pool.js'
import { migrate } from './migrator.js'

export async function withDatabase<T> (config: Config, log: Logger, fn: (pool: Pool) => Promise<T>): Promise<T> {
  const embedded = config.DATABASE_URL ? undefined : await startEmbeddedPostgres({ dataDir: config.DATA_DIR, log })
  const pool = createPool({ url: config.DATABASE_URL ?? embedded!.url, max: 2, statementTimeoutMs: config.DB_STATEMENT_TIMEOUT_MS, log })
  try {
    await migrate(pool, log)
    return await fn(pool)
  } finally {
    await pool.end()
    await embedded?.stop()
  }
}

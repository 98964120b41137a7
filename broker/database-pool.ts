import pg from 'pg'
import type { Logger } from './logger.js'

export type Pool = pg.Pool

export interface PoolOptions {
  url: string
  max: number
  statementTimeoutMs: number
  log: Logger
  applicationName?: string
}

export function createPool (opts: PoolOptions): pg.Pool {
  const pool = new pg.Pool({
    connectionString: opts.url,
    max: opts.max,
    statement_timeout: opts.statementTimeoutMs,
    connectionTimeoutMillis: 5000,
    idleTimeoutMillis: 30_000,
    application_name: opts.applicationName ?? 'fleetgate'
  })
  // An idle client losing its connection (database restart, network) emits
  // here; without a listener it would crash the process (pg-pool README).
  pool.on('error', (err) => opts.log.warn({ err: { message: err.message, code: (err as { code?: string }).code } }, 'idle PostgreSQL connection lost'))
  return pool
}

/** Resolves once the database answers; used by readiness. */
export async function ping (pool: pg.Pool): Promise<void> {
  await pool.query('SELECT 1')
}

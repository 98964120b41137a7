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
  // pg-pool listens on a client only while it is idle. A client checked out
  // for a transaction (pool.connect()) whose connection dies between two
  // statements would emit 'error' with nobody listening, and crash the
  // process; this listener stays for the client's life. The next statement
  // on that client then fails, and its owner releases it as broken.
  pool.on('connect', (client) => {
    client.on('error', (err) => opts.log.warn({ err: { message: err.message, code: (err as { code?: string }).code } }, 'PostgreSQL connection lost'))
  })
  return pool
}

/** Resolves once the database answers; used by readiness. */
export async function ping (pool: pg.Pool): Promise<void> {
  await pool.query('SELECT 1')
}

// Telemetry retention (issue 5): keeps daily partitions from
// TELEMETRY_RETENTION_DAYS ago to PARTITIONS_AHEAD_DAYS ahead, drops older
// ones whole, and ages out dead letters the same way. Runs at start-up and
// every `intervalMs`, under a PostgreSQL advisory lock taken with
// pg_try_advisory_lock: when several replicas share the database, one does
// the work and the others skip this round.
import type pg from 'pg'
import type { Logger } from '../logger.js'
import { every } from '../periodic.js'

const RETENTION_LOCK_KEY = 7_336_421_002
export const PARTITIONS_AHEAD_DAYS = 3

export interface RetentionResult { ran: boolean, created: number, dropped: string[], deadLettersDeleted: number }

export interface TelemetryRetention {
  run (): Promise<RetentionResult>
  close (): Promise<void>
}

export function createTelemetryRetention (opts: { pool: pg.Pool, retentionDays: number, intervalMs: number, log: Logger, onRun? (r: RetentionResult): void }): TelemetryRetention {
  const { pool, log } = opts

  async function runOnce (): Promise<RetentionResult> {
    const client = await pool.connect()
    let broken = false
    try {
      const { rows } = await client.query<{ locked: boolean }>('SELECT pg_try_advisory_lock($1) AS locked', [RETENTION_LOCK_KEY])
      if (!rows[0]!.locked) return { ran: false, created: 0, dropped: [], deadLettersDeleted: 0 }
      try {
        const created = (await client.query<{ n: number }>(
          'SELECT fleetgate_ensure_telemetry_partitions(fleetgate_utc_today() - $1::int, fleetgate_utc_today() + $2::int) AS n',
          [opts.retentionDays, PARTITIONS_AHEAD_DAYS])).rows[0]!.n
        // A partition telemetry_YYYYMMDD whose whole day is past retention.
        const { rows: old } = await client.query<{ name: string }>(
          `SELECT c.relname AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
            WHERE i.inhparent = 'telemetry'::regclass AND c.relname ~ '^telemetry_[0-9]{8}$'
              AND to_date(substring(c.relname from 11), 'YYYYMMDD') < fleetgate_utc_today() - $1::int
            ORDER BY 1`, [opts.retentionDays])
        for (const { name } of old) await client.query(`DROP TABLE ${client.escapeIdentifier(name)}`)
        const dl = await client.query('DELETE FROM dead_letters WHERE received_at < now() - make_interval(days => $1::int)', [opts.retentionDays])
        const result = { ran: true, created, dropped: old.map((o) => o.name), deadLettersDeleted: dl.rowCount ?? 0 }
        if (created > 0 || old.length > 0) log.info(result, 'telemetry retention')
        return result
      } finally {
        await client.query('SELECT pg_advisory_unlock($1)', [RETENTION_LOCK_KEY]).catch(() => { broken = true })
      }
    } catch (err) {
      broken = true
      throw err
    } finally {
      client.release(broken)
    }
  }

  const loop = every(async () => { const r = await runOnce(); opts.onRun?.(r); return r }, {
    intervalMs: opts.intervalMs,
    onError: (err) => log.error({ err: { message: err.message } }, 'telemetry retention failed; partitions may run out')
  })

  return {
    run: () => loop.runNow(),
    close: () => loop.close()
  }
}

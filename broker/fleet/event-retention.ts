// Stored events (fleet_events, migration 006: what Last-Event-ID resumes)
// are kept EVENT_RETENTION_HOURS (issue 13). Deleted in batches of
// BATCH_ROWS rows by id (the oldest first, via the `at` index), each batch
// its own short statement, so a large backlog never holds a long
// transaction or a lock that the change transactions inserting events wait
// on. Every replica may run it: two replicas deleting the same batch simply
// find fewer rows (no lock needed, unlike partition drops).
import type pg from 'pg'
import type { Logger } from '../logger.js'
import { every } from '../periodic.js'

const BATCH_ROWS = 5000
/** Batches per run: a huge backlog is worked off over several runs. */
const MAX_BATCHES = 200

export interface EventRetention {
  /** Deletes what is past retention now; resolves with the rows deleted. */
  run (): Promise<number>
  close (): Promise<void>
}

export function createEventRetention (opts: { pool: pg.Pool, retentionHours: number, intervalMs: number, log: Logger }): EventRetention {
  const { pool, log } = opts
  async function runOnce (): Promise<number> {
    let deleted = 0
    for (let i = 0; i < MAX_BATCHES; i++) {
      const r = await pool.query(
        `DELETE FROM fleet_events WHERE id IN (
           SELECT id FROM fleet_events WHERE at < now() - make_interval(hours => $1::int) ORDER BY at LIMIT $2)`,
        [opts.retentionHours, BATCH_ROWS])
      deleted += r.rowCount ?? 0
      if ((r.rowCount ?? 0) < BATCH_ROWS) break
    }
    if (deleted > 0) log.info({ deleted, retentionHours: opts.retentionHours }, 'stored events past retention deleted')
    return deleted
  }
  const loop = every(runOnce, { intervalMs: opts.intervalMs, onError: (err) => log.warn({ err: { message: err.message } }, 'event retention failed; will retry') })
  return { run: () => loop.runNow(), close: () => loop.close() }
}

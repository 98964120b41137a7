// The audit trail (issue 13): who changed what through the REST API, read
// back by admins (GET /v1/audit) and trimmed by AUDIT_RETENTION_DAYS.
// Entries are written by devices/change-recorder.ts in the change's own
// transaction; this store reads them, trims them, and keeps the counts of
// the one entry of a streamed bulk creation (POST /v1/devices/bulk) up to
// date chunk by chunk, each chunk in its own transaction.
import type pg from 'pg'
import type { Actor, AuditEntry, Queryable } from './change-recorder.js'

export interface AuditRecord {
  id: string
  at: Date
  actor: { id: string, name: string }
  action: string
  target: { type: string, id: string | null }
  requestId: string | null
  before: unknown
  after: unknown
}

export interface AuditQuery {
  actor?: string
  action?: string
  targetType?: string
  targetId?: string
  from?: Date
  to?: Date
  limit: number
  /** The id of the last entry of the previous page (newest first). */
  before?: string
}

export interface AuditStore {
  /** Newest first. */
  list (q: AuditQuery): Promise<AuditRecord[]>
  /** Inserts one entry and returns its id (for an entry updated as the change proceeds). */
  insert (q: Queryable, actor: Actor, entry: AuditEntry): Promise<string>
  /** Replaces the `after` of an entry (in the transaction of the change it now covers). */
  setAfter (q: Queryable, id: string, after: unknown): Promise<void>
  /** Deletes up to `batch` entries older than `days`; returns how many. */
  trim (days: number, batch: number): Promise<number>
}

interface Row {
  id: string
  at: Date
  actor_id: string
  actor_name: string
  action: string
  target_type: string
  target_id: string | null
  request_id: string | null
  before: unknown
  after: unknown
}

const toRecord = (r: Row): AuditRecord => ({
  id: r.id,
  at: r.at,
  actor: { id: r.actor_id, name: r.actor_name },
  action: r.action,
  target: { type: r.target_type, id: r.target_id },
  requestId: r.request_id,
  before: r.before,
  after: r.after
})

export function createAuditStore (pool: pg.Pool): AuditStore {
  return {
    async list (q) {
      // Newest first by id (ids grow with time within a replica's clock):
      // each filter has an index ending in id (migration 006), so a page is
      // an index walk from the cursor, whatever the size of the log.
      const { rows } = await pool.query<Row>(
        `SELECT id::text, at, actor_id, actor_name, action, target_type, target_id, request_id, before, after FROM audit_log
          WHERE ($1::text IS NULL OR actor_id = $1) AND ($2::text IS NULL OR action = $2)
            AND ($3::text IS NULL OR target_type = $3) AND ($4::text IS NULL OR target_id = $4)
            AND ($5::timestamptz IS NULL OR at >= $5) AND ($6::timestamptz IS NULL OR at < $6)
            AND ($7::bigint IS NULL OR id < $7)
          ORDER BY audit_log.id DESC LIMIT $8`,
        [q.actor ?? null, q.action ?? null, q.targetType ?? null, q.targetId ?? null, q.from ?? null, q.to ?? null, q.before ?? null, q.limit])
      return rows.map(toRecord)
    },

    async insert (q, actor, entry) {
      const { rows } = await q.query<{ id: string }>(
        `INSERT INTO audit_log (actor_id, actor_name, request_id, action, target_type, target_id, before, after)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id::text`,
        [actor.id, actor.name, actor.requestId ?? null, entry.action, entry.targetType, entry.targetId ?? null,
          entry.before === undefined ? null : JSON.stringify(entry.before), entry.after === undefined ? null : JSON.stringify(entry.after)])
      return rows[0]!.id
    },

    async setAfter (q, id, after) {
      await q.query('UPDATE audit_log SET after = $2 WHERE id = $1', [id, JSON.stringify(after)])
    },

    async trim (days, batch) {
      const { rowCount } = await pool.query(
        `DELETE FROM audit_log WHERE id IN (
           SELECT id FROM audit_log WHERE at < now() - make_interval(days => $1::int) ORDER BY at LIMIT $2)`, [days, batch])
      return rowCount ?? 0
    }
  }
}

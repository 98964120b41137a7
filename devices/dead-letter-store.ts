// Dead letters (issue 13): the messages the broker refused after receiving
// them, read back for GET /v1/dead-letters. Newest first, paged by the key
// (received_at, id): received_at alone is not unique (one batch shares it).
// The counts per reason cover the same filters without paging, so an
// operator sees at once what a page belongs to; both queries are ranges of
// one index (migrations/009-query-indexes.sql says which), never a scan of
// the table, and the table itself is bounded by TELEMETRY_RETENTION_DAYS.
import type pg from 'pg'

/** Where a dead letter sorts: received_at as PostgreSQL prints it, and its id (a bigint, as text). */
export type DeadLetterKey = [receivedAt: string, id: string]

export interface DeadLetter {
  id: string
  deviceId: string | null
  topic: string
  reason: string
  detail: string | null
  receivedAt: Date
  /** The bytes as received (the first 64 KiB of a payload_too_large). */
  payload: Buffer
  key: DeadLetterKey
}

export interface DeadLetterFilter {
  deviceId?: string
  reason?: string
  /** ISO 8601: received at or after. */
  from?: string
  /** ISO 8601: received before. */
  to?: string
}

export interface DeadLetterQuery extends DeadLetterFilter {
  /** The key of the last dead letter of the previous page. */
  before?: DeadLetterKey
  limit: number
}

export interface DeadLetterStore {
  list (q: DeadLetterQuery): Promise<DeadLetter[]>
  countsByReason (f: DeadLetterFilter): Promise<Record<string, number>>
}

interface Row { id: string, device_id: string | null, topic: string, reason: string, detail: string | null, received_at: Date, payload: Buffer, rt: string }

// One WHERE clause for both queries, so the counts are of exactly what the
// pages list. A NULL parameter switches its condition off; PostgreSQL plans
// each call with its values (pg sends unnamed statements: custom plans), so
// an absent filter costs nothing and a present one picks its index.
const FILTER = `($1::text IS NULL OR device_id = $1) AND ($2::text IS NULL OR reason = $2)
  AND ($3::timestamptz IS NULL OR received_at >= $3) AND ($4::timestamptz IS NULL OR received_at < $4)`

const filterParams = (f: DeadLetterFilter) => [f.deviceId ?? null, f.reason ?? null, f.from ?? null, f.to ?? null]

/** The counts per reason of the dead letters matching a filter (also EXPLAINed by test/devices/dead-letters.test.ts). */
export function countsQuery (f: DeadLetterFilter): { text: string, values: unknown[] } {
  return { text: `SELECT reason, count(*) AS n FROM dead_letters WHERE ${FILTER} GROUP BY reason ORDER BY reason`, values: filterParams(f) }
}

export function createDeadLetterStore (pool: pg.Pool): DeadLetterStore {
  return {
    async list (q) {
      const { rows } = await pool.query<Row>(
        `SELECT id::text AS id, device_id, topic, reason, detail, received_at, payload, received_at::text AS rt
           FROM dead_letters
          WHERE ${FILTER} AND ($5::timestamptz IS NULL OR (received_at, id) < ($5::timestamptz, $6::bigint))
          ORDER BY dead_letters.received_at DESC, dead_letters.id DESC LIMIT $7`,
        [...filterParams(q), q.before?.[0] ?? null, q.before?.[1] ?? null, q.limit])
      return rows.map((r) => ({
        id: r.id, deviceId: r.device_id, topic: r.topic, reason: r.reason, detail: r.detail, receivedAt: r.received_at, payload: r.payload, key: [r.rt, r.id]
      }))
    },
    async countsByReason (f) {
      const { rows } = await pool.query<{ reason: string, n: string }>(countsQuery(f))
      return Object.fromEntries(rows.map((r) => [r.reason, Number(r.n)]))
    }
  }
}

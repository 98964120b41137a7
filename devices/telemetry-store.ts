// Stored readings of one device, in time order, for
// GET /v1/devices/{id}/telemetry. Each payload comes back as the text
// PostgreSQL holds (payload::text), never parsed: JSON.parse and
// JSON.stringify would round numbers past 2^53 or 17 digits, turn 1e400
// into null, and throw on a reading nested some thousands of levels deep
// (JSON.stringify recurses), failing every page that holds it with a 500.
// The route splices the text into its response as it is
// (test/devices/telemetry-exact.test.ts).
import type pg from 'pg'

/** Where a reading sorts: its time as PostgreSQL prints it, and its reading hash (a bigint, as text). */
export type ReadingKey = [ts: string, readingHash: string]

export interface StoredReading {
  ts: Date
  receivedAt: Date
  /** The jsonb payload as PostgreSQL prints it: JSON text, to be sent as it is. */
  payloadJson: string
  key: ReadingKey
}

export interface ReadingQuery {
  /** ISO 8601: readings at or after. */
  from?: string
  /** ISO 8601: readings before. */
  to?: string
  /** The key of the last reading of the previous page. */
  after?: ReadingKey
  limit: number
}

export interface TelemetryStore {
  readings (deviceId: string, q: ReadingQuery): Promise<StoredReading[]>
}

interface Row { ts: Date, received_at: Date, payload: string, ts_text: string, h: string }

export function createTelemetryStore (pool: pg.Pool): TelemetryStore {
  return {
    async readings (deviceId, q) {
      // (ts, reading_hash) is the order and the cursor: ts alone is not
      // unique. ts::text keeps microseconds that a Date would drop.
      const { rows } = await pool.query<Row>(
        `SELECT ts, received_at, payload::text AS payload, ts::text AS ts_text, reading_hash::text AS h FROM telemetry
          WHERE device_id = $1 AND ($2::timestamptz IS NULL OR ts >= $2) AND ($3::timestamptz IS NULL OR ts < $3)
            AND ($4::timestamptz IS NULL OR (ts, reading_hash) > ($4::timestamptz, $5::bigint))
          ORDER BY ts, reading_hash LIMIT $6`,
        [deviceId, q.from ?? null, q.to ?? null, q.after?.[0] ?? null, q.after?.[1] ?? null, q.limit])
      return rows.map((r) => ({ ts: r.ts, receivedAt: r.received_at, payloadJson: r.payload, key: [r.ts_text, r.h] }))
    }
  }
}

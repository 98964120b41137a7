// The SQL side of ingestion: one batch of rows becomes one statement per row
// kind (readings, dead letters), each a prepared INSERT … SELECT FROM unnest(…)
// of column arrays. unnest keeps the whole batch in one round trip and, unlike
// COPY, allows ON CONFLICT DO NOTHING, which is how a retransmitted reading
// with the same (device, ts, content) is stored once (measured by
// `npm run bench:insert`, simulator/bench-insert-paths.ts; figures in README:
// 0.96× the rate of COPY, which cannot deduplicate).
import type pg from 'pg'
import { StandInRefused, type BatchSink } from './batch-writer.js'
import { withTransaction } from '../../devices/transaction.js'
import type { Logger } from '../logger.js'
import { topics } from '../../devices/topics.js'
import type { EventHub, FleetEvent } from '../../devices/fleet-events.js'

export interface ReadingRow {
  kind: 'reading'
  deviceId: string
  ts: number
  hash: string
  receivedAt: number
  json: string
}

export interface DeadLetterRow {
  kind: 'dead'
  deviceId: string | null
  topic: string
  payload: Buffer
  reason: string
  detail: string | null
  receivedAt: number
}

export type IngestRow = ReadingRow | DeadLetterRow

// The payloads travel as one JSON array text ($5) rather than a jsonb[]: each
// reading is already valid JSON, so joining them needs no escaping, where a
// PostgreSQL array literal would escape every quote of every payload.
// The other columns travel as comma-separated text split in SQL: device ids
// ([A-Za-z0-9_.:@-], devices/device-id.ts), hex hashes and integers hold no
// comma, and node-postgres' array serialiser quoted and regex-escaped every
// element of every batch (2% of the broker's CPU at saturation, issue 15).
// ROWS FROM zips the columns with the array's elements in order.
const INSERT_READINGS = {
  name: 'fleetgate_insert_readings_v2',
  text: `INSERT INTO telemetry (device_id, ts, reading_hash, received_at, payload)
         SELECT d, to_timestamp(t / 1000.0), ('x' || h)::bit(64)::bigint, to_timestamp(r / 1000.0), p
           FROM ROWS FROM (unnest(string_to_array($1, ',')), unnest(string_to_array($2, ',')::float8[]), unnest(string_to_array($3, ',')),
                           unnest(string_to_array($4, ',')::float8[]), jsonb_array_elements($5::jsonb)) AS u(d, t, h, r, p)
         ON CONFLICT DO NOTHING`
}
// A device id with a comma (none can be created: the rule above) would split
// wrongly; such a batch goes the old way, as arrays.
const INSERT_READINGS_ARRAYS = {
  name: 'fleetgate_insert_readings',
  text: `INSERT INTO telemetry (device_id, ts, reading_hash, received_at, payload)
         SELECT d, to_timestamp(t / 1000.0), ('x' || h)::bit(64)::bigint, to_timestamp(r / 1000.0), p
           FROM ROWS FROM (unnest($1::text[]), unnest($2::float8[]), unnest($3::text[]), unnest($4::float8[]), jsonb_array_elements($5::jsonb)) AS u(d, t, h, r, p)
         ON CONFLICT DO NOTHING`
}

// A dead letter and its stored `dead_letter` event (issue 13) in one
// statement, hence one transaction: the event exists exactly when the dead
// letter does, and is published after COMMIT (publishDead below).
const INSERT_DEAD_LETTERS = {
  name: 'fleetgate_insert_dead_letters',
  text: `WITH d AS (
           INSERT INTO dead_letters (device_id, topic, payload, reason, detail, received_at)
           SELECT d, t, p, r, x, to_timestamp(a / 1000.0)
             FROM unnest($1::text[], $2::text[], $3::bytea[], $4::text[], $5::text[], $6::float8[]) AS u(d, t, p, r, x, a)
           RETURNING id, device_id, topic, reason, received_at)
         INSERT INTO fleet_events (kind, type, device_id, data, at)
         SELECT 'dead_letter', reason, device_id, jsonb_build_object('deadLetterId', id::text, 'topic', topic, 'reason', reason), received_at
           FROM d ORDER BY id
         RETURNING id::text AS id, at, type, device_id, data`
}

interface DeadLetterEventRow { id: string, at: Date, type: string, device_id: string | null, data: Record<string, unknown> }

function deadLetterEvents (rows: DeadLetterEventRow[]): FleetEvent[] {
  return rows.map((r) => ({ id: r.id, kind: 'dead_letter', type: r.type, at: r.at.toISOString(), ...(r.device_id !== null ? { deviceId: r.device_id } : {}), data: r.data }))
}

/** PostgreSQL text cannot hold NUL; details quote device input, so strip it. */
export function cleanText (s: string, max = 500): string {
  // eslint-disable-next-line no-control-regex
  return s.replace(/\u0000/g, '\\u0000').slice(0, max)
}

export function deadLetterFromReading (row: ReadingRow, reason: string, detail: string): DeadLetterRow {
  return {
    kind: 'dead',
    deviceId: row.deviceId,
    topic: topics.telemetry(row.deviceId),
    payload: Buffer.from(row.json, 'utf8'),
    reason,
    detail: cleanText(detail),
    receivedAt: row.receivedAt
  }
}

function readingQuery (rows: ReadingRow[]): { name: string, text: string, values: unknown[] } {
  const n = rows.length
  const d = new Array<string>(n); const t = new Array<number>(n); const h = new Array<string>(n)
  const r = new Array<number>(n); const p = new Array<string>(n)
  let comma = false
  for (let i = 0; i < n; i++) {
    const row = rows[i]!
    d[i] = row.deviceId; t[i] = row.ts; h[i] = row.hash; r[i] = row.receivedAt; p[i] = row.json
    if (row.deviceId.includes(',')) comma = true
  }
  const payloads = '[' + p.join(',') + ']'
  if (comma) return { ...INSERT_READINGS_ARRAYS, values: [d, t, h, r, payloads] }
  return { ...INSERT_READINGS, values: [d.join(','), t.join(','), h.join(','), r.join(','), payloads] }
}

function deadLetterParams (rows: DeadLetterRow[]): unknown[] {
  return [
    rows.map((r) => r.deviceId), rows.map((r) => r.topic), rows.map((r) => r.payload),
    rows.map((r) => r.reason), rows.map((r) => r.detail), rows.map((r) => r.receivedAt)
  ]
}

export interface TelemetrySinkObserver {
  onDeadLetterLost? (): void
  /** Where the `dead_letter` events go once their dead letters are committed. */
  events?: Pick<EventHub, 'publish'>
}

function byKind (rows: IngestRow[]): { readings: ReadingRow[], dead: DeadLetterRow[] } {
  const readings: ReadingRow[] = []
  const dead: DeadLetterRow[] = []
  for (const r of rows) {
    if (r.kind === 'reading') readings.push(r)
    else dead.push(r)
  }
  return { readings, dead }
}

export function createTelemetrySink (pool: pg.Pool, log: Logger, observer: TelemetrySinkObserver = {}): BatchSink<IngestRow> {
  /** Returns the stored events of the dead letters, to publish once committed. */
  async function insert (client: pg.PoolClient | pg.Pool, readings: ReadingRow[], dead: DeadLetterRow[]): Promise<DeadLetterEventRow[]> {
    if (readings.length > 0) await client.query(readingQuery(readings))
    if (dead.length === 0) return []
    return (await client.query<DeadLetterEventRow>({ ...INSERT_DEAD_LETTERS, values: deadLetterParams(dead) })).rows
  }
  function publishDead (rows: DeadLetterEventRow[]) {
    if (rows.length > 0) observer.events?.publish(deadLetterEvents(rows))
  }

  return {
    async write (rows) {
      const { readings, dead } = byKind(rows)
      if (readings.length === 0 || dead.length === 0) {
        // A single statement commits on its own: one round trip per batch.
        publishDead(await insert(pool, readings, dead))
        return
      }
      publishDead(await withTransaction(pool, (client) => insert(client, readings, dead)))
    },

    async writeProbed (rows) {
      const { readings, dead } = byKind(rows)
      // Stand-ins: an empty reading of the same device at the same time (the
      // same partition), an empty dead letter.
      const standInReadings = readings.length > 0 ? [{ ...readings[0]!, hash: '0000000000000000', json: '{}' }] : []
      const standInDead = dead.length > 0 ? [{ ...dead[0]!, topic: 'fleetgate/probe', payload: Buffer.alloc(0), reason: 'probe', detail: null }] : []
      publishDead(await withTransaction(pool, async (client) => {
        await client.query('SAVEPOINT stand_in')
        try {
          await insert(client, standInReadings, standInDead)
        } catch (err) {
          throw new StandInRefused(err as Error)
        }
        await client.query('ROLLBACK TO SAVEPOINT stand_in')
        return await insert(client, readings, dead)
      }))
    },

    async reject (row, err) {
      const code = (err as { code?: string }).code ?? 'unknown'
      if (row.kind === 'reading') {
        log.info({ deviceId: row.deviceId, code, reason: err.message }, 'reading refused by PostgreSQL, dead-lettered')
        publishDead(await insert(pool, [], [deadLetterFromReading(row, 'db_rejected', `${code}: ${err.message}`)]))
        return
      }
      // A dead letter that PostgreSQL itself refuses cannot be stored anywhere
      // else: say so loudly and count it (fleetgate_dead_letters_lost_total).
      observer.onDeadLetterLost?.()
      log.error({ deviceId: row.deviceId, reason: row.reason, code, err: err.message }, 'dead letter could not be stored')
    }
  }
}

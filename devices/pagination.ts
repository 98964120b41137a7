// Opaque cursors: the sort key of the last item, base64url-encoded JSON.
// Clients pass them back unchanged; a tampered cursor is a 400, not a 500.
import { ApiError } from './api-error.js'
import { UUID_RE } from './uuid.js'

export const MAX_LIMIT = 1000
export const DEFAULT_LIMIT = 100

export function encodeCursor (key: unknown[]): string {
  return Buffer.from(JSON.stringify(key)).toString('base64url')
}

/** Whether one field of a decoded cursor is acceptable. */
export type CursorField = RegExp | ((value: string) => boolean)

const accepts = (field: CursorField, value: string) => typeof field === 'function' ? field(value) : field.test(value)

/**
 * Decodes a cursor whose fields must each pass a check (so nothing a
 * client tampers with reaches PostgreSQL as a bad cast: 400 invalid_cursor,
 * never 500, nor PostgreSQL's own refusal reported as some other code).
 */
export function decodeCursor (cursor: string | undefined, fields: CursorField[]): string[] | undefined {
  if (cursor === undefined) return undefined
  try {
    const key = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as unknown
    if (Array.isArray(key) && key.length === fields.length && key.every((k, i) => typeof k === 'string' && accepts(fields[i]!, k))) return key as string[]
  } catch {}
  throw new ApiError(400, 'invalid_cursor', 'cursor is not one this API returned')
}

// A timestamptz as PostgreSQL prints it (ts::text) or as toISOString() does.
const TIMESTAMP = /^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(\.\d{1,6})?(Z|[+-](\d{2})(?::?(\d{2}))?)$/

/**
 * The shape alone lets 2026-02-30 or 25:00 through to PostgreSQL, which
 * refuses the cast; every field is checked against the calendar here.
 */
function isTimestamp (s: string): boolean {
  const m = TIMESTAMP.exec(s)
  if (!m) return false
  const [year, month, day, hour, minute, second] = m.slice(1, 7).map(Number) as [number, number, number, number, number, number]
  const daysInMonth = new Date(Date.UTC(year, month, 0)).getUTCDate()
  return year >= 1 && month >= 1 && month <= 12 && day >= 1 && day <= daysInMonth &&
    hour <= 23 && minute <= 59 && second <= 59 &&
    (m[9] === undefined || Number(m[9]) <= 15) && (m[10] === undefined || Number(m[10]) <= 59)
}

const INT8_MIN = -(2n ** 63n)
const INT8_MAX = 2n ** 63n - 1n
/** A PostgreSQL bigint: 19 digits can still be out of its range. */
const isBigint = (s: string) => /^-?\d{1,19}$/.test(s) && BigInt(s) >= INT8_MIN && BigInt(s) <= INT8_MAX

export const CURSOR = {
  deviceId: /^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$/,
  timestamp: isTimestamp,
  uuid: UUID_RE,
  bigint: isBigint
} satisfies Record<string, CursorField>

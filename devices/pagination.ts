// Opaque cursors: the sort key of the last item, base64url-encoded JSON.
// Clients pass them back unchanged; a tampered cursor is a 400, not a 500.
import { ApiError } from './api-error.js'
import { UUID_RE } from './uuid.js'

export const MAX_LIMIT = 1000
export const DEFAULT_LIMIT = 100

export function encodeCursor (key: unknown[]): string {
  return Buffer.from(JSON.stringify(key)).toString('base64url')
}

/**
 * Decodes a cursor whose fields must each match a pattern (so nothing a
 * client tampers with reaches PostgreSQL as a bad cast: 400, never 500).
 */
export function decodeCursor (cursor: string | undefined, fields: RegExp[]): string[] | undefined {
  if (cursor === undefined) return undefined
  try {
    const key = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as unknown
    if (Array.isArray(key) && key.length === fields.length && key.every((k, i) => typeof k === 'string' && fields[i]!.test(k))) return key as string[]
  } catch {}
  throw new ApiError(400, 'invalid_cursor', 'cursor is not one this API returned')
}

export const CURSOR = {
  deviceId: /^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$/,
  timestamp: /^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}(:?\d{2})?)$/,
  uuid: UUID_RE,
  bigint: /^-?\d{1,19}$/
}

// Opaque cursors: the sort key of the last item, base64url-encoded JSON.
// Clients pass them back unchanged; a tampered cursor is a 400, not a 500.
import { ApiError } from './api-error.js'

export const MAX_LIMIT = 1000
export const DEFAULT_LIMIT = 100

export function encodeCursor (key: unknown[]): string {
  return Buffer.from(JSON.stringify(key)).toString('base64url')
}

export function decodeCursor (cursor: string | undefined, arity: number): unknown[] | undefined {
  if (cursor === undefined) return undefined
  try {
    const key = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as unknown
    if (Array.isArray(key) && key.length === arity && key.every((k) => typeof k === 'string' || typeof k === 'number')) return key
  } catch {}
  throw new ApiError(400, 'invalid_cursor', 'cursor is not one this API returned')
}

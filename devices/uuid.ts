/** A canonical UUID (8-4-4-4-12 hex); anything else is looked up as not found, never cast by PostgreSQL. */
export const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i
export const isUuid = (s: string): boolean => UUID_RE.test(s)

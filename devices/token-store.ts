// Operator API tokens. A token is 'fgt_' + 256 random bits, shown once; the
// database keeps its SHA-256 (fast is right for random tokens, as for device
// secrets). Scopes: read ⊂ write ⊂ admin.
import { createHash, randomBytes, randomUUID } from 'node:crypto'
import type pg from 'pg'
import type { Queryable } from './change-recorder.js'
import { notFound } from './domain-error.js'

export type Scope = 'read' | 'write' | 'admin'
export const SCOPES: Scope[] = ['read', 'write', 'admin']

export interface TokenInfo { id: string, name: string, scopes: Scope[], createdAt: Date, revokedAt: Date | null, lastUsedAt: Date | null }

export function hashToken (token: string): string {
  return createHash('sha256').update(token).digest('hex')
}

export function hasScope (granted: Scope[], needed: Scope): boolean {
  const rank = { read: 0, write: 1, admin: 2 }
  return granted.some((g) => rank[g] >= rank[needed])
}

interface Row { id: string, name: string, scopes: Scope[], created_at: Date, revoked_at: Date | null, last_used_at: Date | null }
const toInfo = (r: Row): TokenInfo => ({ id: r.id, name: r.name, scopes: r.scopes, createdAt: r.created_at, revokedAt: r.revoked_at, lastUsedAt: r.last_used_at })

// create and revoke run on `q` when given (an audited REST call's transaction).
export interface TokenStore {
  create (name: string, scopes: Scope[], q?: Queryable): Promise<TokenInfo & { token: string }>
  /** The live (not revoked) token with this value, or undefined. */
  verify (token: string): Promise<TokenInfo | undefined>
  /** Revokes at once (again is fine); not_found for an unknown id. Returns the token as it was before, and after. */
  revoke (id: string, q?: Queryable): Promise<{ before: TokenInfo, after: TokenInfo }>
  list (): Promise<TokenInfo[]>
}

/** onError: a failure in the background (the last-used stamp), to be logged and counted by the caller. */
export function createTokenStore (pool: pg.Pool, onError: (what: string, err: Error) => void = () => {}): TokenStore {
  return {
    async create (name, scopes, q = pool) {
      const token = 'fgt_' + randomBytes(32).toString('base64url')
      const id = 'tok_' + randomUUID().replace(/-/g, '').slice(0, 16)
      const { rows } = await q.query<Row>(
        'INSERT INTO api_tokens (id, name, token_hash, scopes) VALUES ($1, $2, $3, $4) RETURNING *', [id, name, hashToken(token), scopes])
      return { ...toInfo(rows[0]!), token }
    },
    async verify (token) {
      // Looked up on every request, so a revoked token stops working at once
      // on every replica. last_used_at is refreshed at most once a minute.
      const { rows } = await pool.query<Row>('SELECT * FROM api_tokens WHERE token_hash = $1 AND revoked_at IS NULL', [hashToken(token)])
      const row = rows[0]
      if (!row) return undefined
      if (!row.last_used_at || Date.now() - row.last_used_at.getTime() > 60_000) {
        // Not awaited: the request does not wait for the stamp.
        pool.query('UPDATE api_tokens SET last_used_at = now() WHERE id = $1', [row.id]).catch((err: Error) => onError('token_last_used', err))
      }
      return toInfo(row)
    },
    async revoke (id, q = pool) {
      const { rows } = await q.query<Row & { revoked_now: Date }>(
        `UPDATE api_tokens t SET revoked_at = coalesce(t.revoked_at, now()) FROM api_tokens old
          WHERE t.id = $1 AND old.id = t.id
          RETURNING old.id, old.name, old.scopes, old.created_at, old.revoked_at, old.last_used_at, t.revoked_at AS revoked_now`, [id])
      if (!rows[0]) throw notFound(`token ${id}`)
      const before = toInfo(rows[0])
      return { before, after: { ...before, revokedAt: rows[0].revoked_now } }
    },
    async list () {
      return (await pool.query<Row>('SELECT * FROM api_tokens ORDER BY created_at, id')).rows.map(toInfo)
    }
  }
}

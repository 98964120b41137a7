// Operator authentication (issue 3): `Authorization: Bearer <token>`. The
// ADMIN_TOKEN from the environment is the first token (all scopes); others
// are API tokens created by an admin (devices/token-store.ts).
import { timingSafeEqual, createHash } from 'node:crypto'
import type { FastifyRequest } from 'fastify'
import { ApiError } from './api-error.js'
import { hasScope, type Scope, type TokenStore } from './token-store.js'

export interface Operator { tokenId: string, scopes: Scope[] }

declare module 'fastify' {
  interface FastifyRequest { operator?: Operator }
}

const digest = (s: string) => createHash('sha256').update(s).digest()

export function createOperatorAuth (opts: { adminToken: string | undefined, tokens: TokenStore }) {
  const adminDigest = opts.adminToken ? digest(opts.adminToken) : undefined

  async function identify (req: FastifyRequest): Promise<Operator> {
    const header = req.headers.authorization
    const m = header ? /^Bearer\s+(\S+)$/i.exec(header) : null
    if (!m) throw new ApiError(401, 'unauthorized', 'missing bearer token', { 'www-authenticate': 'Bearer' })
    const token = m[1]!
    // Compare digests in constant time: the length of the guess leaks nothing.
    if (adminDigest && timingSafeEqual(digest(token), adminDigest)) return { tokenId: 'admin', scopes: ['admin'] }
    const info = await opts.tokens.verify(token)
    if (!info) throw new ApiError(401, 'unauthorized', 'invalid or revoked token', { 'www-authenticate': 'Bearer error="invalid_token"' })
    return { tokenId: info.id, scopes: info.scopes }
  }

  return {
    /** onRequest hook: identifies the operator (every /v1 route needs one). */
    async authenticate (req: FastifyRequest) {
      req.operator = await identify(req)
    },
    /** preHandler for a route: 403 unless the token has the scope. */
    require (scope: Scope) {
      return async (req: FastifyRequest) => {
        if (!req.operator || !hasScope(req.operator.scopes, scope)) {
          throw new ApiError(403, 'forbidden', `this token lacks the '${scope}' scope`)
        }
      }
    }
  }
}

export type OperatorAuth = ReturnType<typeof createOperatorAuth>

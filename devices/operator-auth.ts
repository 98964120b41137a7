// Operator authentication (issue 3): `Authorization: Bearer <token>`. The
// ADMIN_TOKEN from the environment is the first token (all scopes); others
// are API tokens created by an admin (devices/token-store.ts).
// The web console (issue 14) sends the same token in the HttpOnly
// `fleetgate_session` cookie instead; a request authenticated by that cookie
// must prove for every state-changing method that it was made by the console's
// own script (header `x-csrf-token`, see csrfTokenFor), because a browser
// attaches cookies to requests other sites trigger, never custom headers.
import { timingSafeEqual, createHash } from 'node:crypto'
import type { FastifyRequest } from 'fastify'
import type { Actor } from './change-recorder.js'
import { ApiError } from './api-error.js'
import { hasScope, type Scope, type TokenStore } from './token-store.js'

export interface Operator { tokenId: string, name: string, scopes: Scope[] }

declare module 'fastify' {
  interface FastifyRequest { operator?: Operator }
}

const digest = (s: string) => createHash('sha256').update(s).digest()

/** The console's session cookie: holds the operator's API token. */
export const SESSION_COOKIE = 'fleetgate_session'

/**
 * The CSRF token of a session: derived from the session token itself, so
 * every replica computes the same value without shared state, and nobody
 * without the token (which the HttpOnly cookie hides from scripts) can.
 */
export function csrfTokenFor (sessionToken: string): string {
  return createHash('sha256').update('csrf:' + sessionToken).digest('base64url')
}

/** The session token from a Cookie header, if the console's cookie is there. */
export function sessionTokenOf (req: FastifyRequest): string | undefined {
  const header = req.headers.cookie
  if (!header) return undefined
  for (const part of header.split(';')) {
    const eq = part.indexOf('=')
    if (eq < 0 || part.slice(0, eq).trim() !== SESSION_COOKIE) continue
    const value = part.slice(eq + 1).trim()
    // A malformed escape is no session (401 as without a cookie), never a 500.
    try { return value === '' ? undefined : decodeURIComponent(value) } catch { return undefined }
  }
  return undefined
}

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS'])

function csrfMatches (req: FastifyRequest, sessionToken: string): boolean {
  const given = req.headers['x-csrf-token']
  if (typeof given !== 'string') return false
  return timingSafeEqual(digest(given), digest(csrfTokenFor(sessionToken)))
}

export function createOperatorAuth (opts: { adminToken: string | undefined, tokens: TokenStore, failuresPerMinute?: number }) {
  const adminDigest = opts.adminToken ? digest(opts.adminToken) : undefined
  // Token guessing, or a flood of bad tokens, is bounded per address before
  // it costs a database look-up: past `failuresPerMinute` failed
  // authentications in the current minute, an address gets 429 at once.
  // (The per-token rate limit can only apply once a token is known.)
  const maxFailures = opts.failuresPerMinute ?? 30
  let failures = new Map<string, number>()
  let windowStart = Date.now()
  const failuresNow = (ip: string) => {
    if (Date.now() - windowStart >= 60_000) { failures = new Map(); windowStart = Date.now() }
    return failures.get(ip) ?? 0
  }
  const failed = (ip: string) => { if (failures.size < 100_000 || failures.has(ip)) failures.set(ip, failuresNow(ip) + 1) }
  // Tokens that verified in the last minute are not blocked with their
  // address (operators sharing a NAT or a proxy with a misbehaving client);
  // they are still verified on every request, so revocation stays immediate.
  const recentlyValid = new Map<string, number>()
  const remember = (key: string) => {
    if (recentlyValid.size >= 10_000) recentlyValid.delete(recentlyValid.keys().next().value!)
    recentlyValid.set(key, Date.now() + 60_000)
  }
  const knownGood = (key: string) => (recentlyValid.get(key) ?? 0) > Date.now()

  async function identify (req: FastifyRequest): Promise<Operator> {
    const header = req.headers.authorization
    if (header === undefined) {
      // No Authorization header: the console's session cookie, if any.
      const session = sessionTokenOf(req)
      if (session !== undefined) {
        const operator = await verifyToken(req, session)
        if (!SAFE_METHODS.has(req.method) && !csrfMatches(req, session)) {
          throw new ApiError(403, 'csrf_failed', 'a state-changing request with the session cookie needs the x-csrf-token header (GET /console/session)')
        }
        return operator
      }
    }
    const m = header ? /^Bearer\s+(\S+)$/i.exec(header) : null
    if (!m) throw new ApiError(401, 'unauthorized', 'missing bearer token', { 'www-authenticate': 'Bearer' })
    return await verifyToken(req, m[1]!)
  }

  async function verifyToken (req: FastifyRequest, token: string): Promise<Operator> {
    // Compare digests in constant time: the length of the guess leaks nothing.
    if (adminDigest && timingSafeEqual(digest(token), adminDigest)) return { tokenId: 'admin', name: 'admin', scopes: ['admin'] }
    const key = digest(token).toString('base64')
    if (failuresNow(req.ip) >= maxFailures && !knownGood(key)) {
      const retry = Math.max(1, Math.ceil((windowStart + 60_000 - Date.now()) / 1000))
      throw new ApiError(429, 'rate_limited', `too many failed authentications from this address; retry in ${retry} s`, { 'retry-after': String(retry) })
    }
    const info = await opts.tokens.verify(token)
    if (!info) {
      recentlyValid.delete(key)
      failed(req.ip)
      throw new ApiError(401, 'unauthorized', 'invalid or revoked token', { 'www-authenticate': 'Bearer error="invalid_token"' })
    }
    remember(key)
    return { tokenId: info.id, name: info.name, scopes: info.scopes }
  }

  return {
    /** onRequest hook: identifies the operator (every /v1 route needs one). */
    async authenticate (req: FastifyRequest) {
      req.operator = await identify(req)
    },
    /** The operator a token belongs to (the console's sign-in); 401/429 like authenticate. */
    async verify (req: FastifyRequest, token: string): Promise<Operator> {
      return await verifyToken(req, token)
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

/** The audit trail's "who" of an authenticated request (devices/change-recorder.ts). */
export function actorOf (req: FastifyRequest): Actor {
  if (!req.operator) throw new Error('actorOf: the request has no operator (route outside /v1?)')
  return { id: req.operator.tokenId, name: req.operator.name, requestId: String(req.id) }
}

// Errors of the HTTP layer itself (authentication, scopes, rate limits,
// request shape: bodies, cursors), answered as application/problem+json
// (RFC 9457) with a stable `code` (documented in the README). Conditions of
// the device domain are DomainErrors instead (devices/domain-error.ts).
// 5xx responses never carry internals.
export class ApiError extends Error {
  override name = 'ApiError'
  constructor (readonly statusCode: number, readonly code: string, message: string, readonly headers: Record<string, string> = {}) {
    super(message)
  }
}

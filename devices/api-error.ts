// Errors of the REST API: application/problem+json (RFC 9457) with a stable
// `code` (documented in the README). 5xx responses never carry internals.
export class ApiError extends Error {
  override name = 'ApiError'
  constructor (readonly statusCode: number, readonly code: string, message: string, readonly headers: Record<string, string> = {}) {
    super(message)
  }
}

export const notFound = (what: string) => new ApiError(404, 'not_found', `${what} not found`)

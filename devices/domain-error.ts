// Expected failures of the device domain, each with a stable code (the
// `code` of the problem+json an operator gets, documented in the README).
// Stores and domain helpers throw only these; how each code is answered over
// HTTP is decided in one place, devices/domain-status.ts, so a store never
// knows about status codes and a route never invents one for a domain
// condition ("Fit the ecosystem and show the architecture").

export type DomainCode =
  | 'not_found'
  | 'invalid_device_id'
  | 'device_exists'
  | 'version_conflict'
  | 'idempotency_key_reused'
  | 'invalid_transition'
  | 'invalid_selector'

export class DomainError extends Error {
  override name = 'DomainError'
  constructor (readonly code: DomainCode, message: string) {
    super(message)
  }
}

export const notFound = (what: string) => new DomainError('not_found', `${what} not found`)

/**
 * The value of a look-up that must have found something. Stores answer a
 * query by id with undefined when nothing matches (absence is an answer);
 * a caller that needs the thing says so here, and the operator gets 404.
 */
export function found<T> (value: T | undefined, what: string): T {
  if (value === undefined) throw notFound(what)
  return value
}

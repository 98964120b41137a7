// The one table from domain error codes (devices/domain-error.ts) to HTTP
// statuses, used by the error handler (devices/problem-details.ts). Typed
// over every DomainCode: a new code does not compile until it has a status.
import type { DomainCode } from './domain-error.js'

export const DOMAIN_STATUS: Readonly<Record<DomainCode, number>> = {
  not_found: 404,
  invalid_device_id: 400,
  invalid_selector: 400,
  device_exists: 409,
  version_conflict: 409,
  invalid_transition: 409,
  // The IETF Idempotency-Key draft: the same key for another request is 422.
  idempotency_key_reused: 422
}

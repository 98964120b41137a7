// Every stable `code` an error of the API can carry (issue 13: "Errors are
// served as application/problem+json with the documented `code` enum"): the
// enum of Problem.code in /openapi.json (devices/openapi-document.ts). The
// codes come from three places — DomainErrors (devices/domain-error.ts, the
// compiler checks they are all here), ApiErrors thrown by routes and hooks,
// and the errors fastify and Node raise themselves (devices/problem-details.ts);
// test/devices/openapi-lint.test.ts reads the sources for the last two, so a
// new code cannot be thrown without being listed.
import type { DomainCode } from './domain-error.js'

export const PROBLEM_CODES = [
  // 400
  'invalid_request', 'invalid_cursor', 'invalid_range', 'invalid_selector', 'invalid_device_id', 'too_many_buckets',
  // 401, 403
  'unauthorized', 'forbidden', 'csrf_failed',
  // 404, 405, 408
  'not_found', 'method_not_allowed', 'request_timeout',
  // 409
  'device_exists', 'version_conflict', 'invalid_transition',
  // 413, 414, 415
  'payload_too_large', 'uri_too_long', 'unsupported_media_type',
  // 422
  'idempotency_key_reused',
  // 429, 431
  'rate_limited', 'too_many_streams', 'headers_too_large',
  // 500
  'internal_error'
] as const

export type ProblemCode = typeof PROBLEM_CODES[number]

// Compile-time: every DomainCode is a ProblemCode.
type MissingDomainCodes = Exclude<DomainCode, ProblemCode>
export const DOMAIN_CODES_LISTED: [MissingDomainCodes] extends [never] ? true : MissingDomainCodes = true

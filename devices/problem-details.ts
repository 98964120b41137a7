// Every error of the API as application/problem+json with a stable code.
// Validation errors are 400 invalid_request; unexpected errors are 500
// internal_error with a generic message (the details go to the log only).
import type { FastifyError, FastifyInstance } from 'fastify'
import { ApiError } from './api-error.js'
import { DomainError } from './domain-error.js'

const DOMAIN_STATUS: Record<string, number> = { invalid_device_id: 400, device_exists: 409 }

export function installProblemDetails (app: FastifyInstance): void {
  app.setErrorHandler((err: FastifyError | ApiError | DomainError, req, reply) => {
    let status = 500; let code = 'internal_error'; let detail = 'internal error'
    let headers: Record<string, string> = {}
    if (err instanceof ApiError) {
      status = err.statusCode; code = err.code; detail = err.message; headers = err.headers
    } else if (err instanceof DomainError) {
      status = DOMAIN_STATUS[err.code] ?? 400; code = err.code; detail = err.message
    } else if (typeof (err as { code?: unknown }).code === 'string' && /^22[0-9A-Z]{3}$/.test((err as { code: string }).code)) {
      // PostgreSQL refused a value the client sent (e.g. \u0000 in JSON, which jsonb cannot hold).
      status = 400; code = 'invalid_request'; detail = 'a value in the request cannot be stored'
    } else if ((err as FastifyError).validation) {
      status = 400; code = 'invalid_request'; detail = err.message
    } else if ((err as FastifyError).statusCode === 429) {
      status = 429; code = 'rate_limited'; detail = err.message
    } else if ((err as FastifyError).statusCode && (err as FastifyError).statusCode! < 500) {
      // fastify's own client errors: bad JSON, wrong content type, body too large…
      status = (err as FastifyError).statusCode!
      code = ({ 413: 'payload_too_large', 415: 'unsupported_media_type' } as Record<number, string>)[status] ?? 'invalid_request'
      detail = err.message
    } else {
      req.log.error({ err }, 'request failed')
    }
    if (status >= 400 && status < 500) req.log.info({ code, status }, detail)
    void reply.code(status).headers(headers).type('application/problem+json')
      .send({ type: `https://fleetgate.dev/problems/${code}`, title: code.replace(/_/g, ' '), status, code, detail, requestId: req.id })
  })
  app.setNotFoundHandler((req, reply) => {
    void reply.code(404).type('application/problem+json')
      .send({ type: 'https://fleetgate.dev/problems/not_found', title: 'not found', status: 404, code: 'not_found', detail: `no route ${req.method} ${req.url.split('?')[0]}`, requestId: req.id })
  })
}

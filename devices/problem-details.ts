// Every error of the API as application/problem+json with a stable code.
// ApiErrors carry their status; DomainErrors get theirs from the one table
// in devices/domain-status.ts. Validation errors are 400 invalid_request;
// unexpected errors are 500 internal_error with a generic message (the
// details go to the log only). That includes what fastify and Node refuse
// before any route runs: unknown routes (404) or methods (405), URLs the
// router cannot take (400, 414), bodies (413, 415, bad JSON) and requests
// that are not HTTP at all (400, 408, 431): the three entry points below
// cover the error handler, the router and the socket.
import { STATUS_CODES } from 'node:http'
import type { Socket } from 'node:net'
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { ApiError } from './api-error.js'
import { DomainError } from './domain-error.js'
import { DOMAIN_STATUS } from './domain-status.js'

const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'] as const

/** The stable code of a client error fastify or Node raised, by status. */
const CODE_BY_STATUS: Record<number, string> = {
  400: 'invalid_request',
  404: 'not_found',
  405: 'method_not_allowed',
  408: 'request_timeout',
  413: 'payload_too_large',
  414: 'uri_too_long',
  415: 'unsupported_media_type',
  429: 'rate_limited',
  431: 'headers_too_large'
}

export function problemJson (status: number, code: string, detail: string, requestId?: string): string {
  return JSON.stringify({ type: `https://fleetgate.dev/problems/${code}`, title: code.replace(/_/g, ' '), status, code, detail, requestId })
}

function sendProblem (req: FastifyRequest, reply: FastifyReply, status: number, code: string, detail: string, headers: Record<string, string> = {}): void {
  if (status >= 400 && status < 500) req.log.info({ code, status }, detail)
  void reply.code(status).headers({ ...headers, 'x-request-id': req.id }).type('application/problem+json').send(problemJson(status, code, detail, req.id))
}

export function installProblemDetails (app: FastifyInstance): void {
  app.setErrorHandler((err: FastifyError | ApiError | DomainError, req, reply) => {
    let status = 500; let code = 'internal_error'; let detail = 'internal error'
    let headers: Record<string, string> = {}
    if (err instanceof ApiError) {
      status = err.statusCode; code = err.code; detail = err.message; headers = err.headers
    } else if (err instanceof DomainError) {
      status = DOMAIN_STATUS[err.code]; code = err.code; detail = err.message
    } else if (typeof (err as { code?: unknown }).code === 'string' && /^22[0-9A-Z]{3}$/.test((err as { code: string }).code)) {
      // PostgreSQL refused a value the client sent (e.g. \u0000 in JSON, which jsonb cannot hold).
      status = 400; code = 'invalid_request'; detail = 'a value in the request cannot be stored'
    } else if ((err as FastifyError).validation) {
      status = 400; code = 'invalid_request'; detail = err.message
    } else if ((err as FastifyError).statusCode && (err as FastifyError).statusCode! >= 400 && (err as FastifyError).statusCode! < 500) {
      // fastify's own client errors: bad JSON, body too large, rate limit…
      status = (err as FastifyError).statusCode!
      code = CODE_BY_STATUS[status] ?? 'invalid_request'
      detail = err.message
    } else {
      req.log.error({ err }, 'request failed')
    }
    sendProblem(req, reply, status, code, detail, headers)
  })
  app.setNotFoundHandler((req, reply) => {
    const path = req.url.split('?')[0]!
    // fastify answers 404 for a known path with another method; 405 with
    // Allow tells the client which method it meant (RFC 9110 §15.5.6).
    const allow = METHODS.filter((method) => routes(app, method, path))
    if (allow.length > 0 && !allow.includes(req.method as typeof METHODS[number])) {
      return sendProblem(req, reply, 405, 'method_not_allowed', `${req.method} is not allowed on ${path}; allowed: ${allow.join(', ')}`, { allow: allow.join(', ') })
    }
    sendProblem(req, reply, 404, 'not_found', `no route ${req.method} ${path}`)
  })
}

/**
 * Whether a route takes `method` on `path`. For a path the router cannot
 * take at all (bad percent-encoding, an over-long segment) find-my-way
 * returns a new error-answering handler on every look-up, while every real
 * route shares fastify's one route handler: asking twice tells them apart
 * (and should that change, the answer falls back to "no", i.e. 404).
 */
function routes (app: FastifyInstance, method: string, path: string): boolean {
  const found = app.findRoute({ method: method as 'GET', url: path })
  return found !== null && found.handler === app.findRoute({ method: method as 'GET', url: path })?.handler
}

/**
 * fastify's `frameworkErrors` option: errors of the router, raised before a
 * route (and its error handler) is chosen — a path parameter longer than
 * routerOptions.maxParamLength, a path that is not valid percent-encoding.
 */
export function frameworkErrors (err: FastifyError, req: FastifyRequest, reply: FastifyReply): void {
  if (err.code === 'FST_ERR_MAX_PARAM_LENGTH') return sendProblem(req, reply, 414, 'uri_too_long', 'a path segment of the URL is too long')
  if (err.code === 'FST_ERR_BAD_URL') return sendProblem(req, reply, 400, 'invalid_request', 'the URL path is not valid percent-encoding')
  req.log.error({ err }, 'request failed in the router')
  sendProblem(req, reply, 500, 'internal_error', 'internal error')
}

/**
 * fastify's `clientErrorHandler`: Node's HTTP parser refused the request
 * (not HTTP, headers too large, too slow), so there is no request object
 * and the answer is written to the socket, which is then closed.
 */
export function clientErrorHandler (err: Error & { code?: string }, socket: Socket): void {
  // A reset connection has nobody left to answer.
  if (err.code === 'ECONNRESET' || socket.destroyed) return
  const [status, detail] = err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
    ? [408, 'the request was not received in time']
    : err.code === 'HPE_HEADER_OVERFLOW'
      ? [431, 'the request line and headers are too large']
      : [400, 'the request is not valid HTTP/1.1'] as const
  const body = problemJson(status, CODE_BY_STATUS[status]!, detail)
  if (socket.writable) {
    socket.write(`HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nConnection: close\r\nContent-Type: application/problem+json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`)
  }
  socket.destroy(err)
}

// The HTTP side of the broker process: liveness, readiness, metrics, and the
// control-plane REST API (devices/control-plane.ts) with its OpenAPI document.
import { randomUUID } from 'node:crypto'
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify'
import '../devices/operator-auth.js' // declares FastifyRequest.operator
import fastifySwagger from '@fastify/swagger'
import fastifySwaggerUi from '@fastify/swagger-ui'
import type { Logger } from './logger.js'
import type { Metrics } from './metrics.js'
import { clientErrorHandler, frameworkErrors, installProblemDetails } from '../devices/problem-details.js'
import { installJsonBody } from '../devices/json-body.js'
import { Problem } from '../devices/schemas.js'
import { OPENAPI_INFO, OPENAPI_SERVERS, OPENAPI_TAGS, finishOpenApiDocument } from '../devices/openapi-document.js'
import { controlPlane, type ControlPlaneDeps } from '../devices/control-plane.js'
import { consolePlugin } from '../console/console-plugin.js'

export interface Readiness {
  /** undefined when ready; otherwise the reason it is not. */
  check (): Promise<string | undefined>
}

export interface HttpServerOptions {
  log: Logger
  metrics: Metrics
  readiness: Readiness
  /** undefined while healthy; otherwise why not (the event loop was stalled). */
  health?: { check (): string | undefined }
  controlPlane?: ControlPlaneDeps
  /** Behind a reverse proxy: the client address comes from X-Forwarded-For. */
  trustProxy?: boolean
  /** Serve the web console at /console (GET / redirects there); needs controlPlane. Default true. */
  console?: boolean
}

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,100}$/

// The longest path parameter the router takes (after percent-decoding).
// fastify's default, 100, is shorter than a device id (128 characters,
// devices/device-id.ts): every /v1/devices/{id} route answered 414 for valid
// ids. Longer parameters than ids are still routed so that the route's schema
// answers 400 invalid_request; past this bound it is 414 uri_too_long.
const MAX_PATH_PARAM_LENGTH = 512

export async function createHttpServer (opts: HttpServerOptions): Promise<FastifyInstance> {
  const app = Fastify({
    trustProxy: opts.trustProxy ?? false,
    loggerInstance: opts.log as FastifyBaseLogger,
    // fastify's own two lines per request (the second without method or
    // URL) are replaced by one access line in onResponse below.
    logController: new LogController({ disableRequestLogging: true }),
    // A caller's X-Request-Id is kept (if sane) so one id follows a request
    // through logs, the command it creates and that command's result.
    genReqId: (req) => {
      const given = req.headers['x-request-id']
      return typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID()
    },
    bodyLimit: 1024 * 1024,
    routerOptions: { maxParamLength: MAX_PATH_PARAM_LENGTH },
    // Errors raised before a route is chosen, or before HTTP is even parsed,
    // are problem+json like every other error (devices/problem-details.ts).
    frameworkErrors,
    clientErrorHandler,
    // Unknown fields are an error (a typo must not be silently ignored).
    ajv: { customOptions: { removeAdditional: false } },
    connectionTimeout: 120_000
  })
  app.addHook('onSend', async (req, reply) => { void reply.header('x-request-id', req.id) })
  // One stable line with the port actually bound (HTTP_PORT=0: any free
  // port), like the MQTT listeners' (mqtt/listeners.ts): at info, and written
  // even when LOG_LEVEL hides info (not when it is 'silent').
  app.addHook('onListen', async () => {
    const address = app.server.address()
    if (typeof address !== 'object' || !address) return
    const announce = opts.log.isLevelEnabled('info') || opts.log.level === 'silent' ? opts.log : opts.log.child({}, { level: 'info' })
    announce.info({ listener: 'http', address: address.address, port: address.port }, 'listening')
  })
  app.addHook('onResponse', async (req, reply) => {
    const route = req.routeOptions.url ?? 'unmatched'
    opts.metrics.httpDuration.observe({ method: req.method, route, status: String(reply.statusCode) }, reply.elapsedTime / 1000)
    // One access line per request (the request id is in the child logger's
    // context); probes and scrapes arrive every few seconds and are not logged.
    if (route === '/healthz' || route === '/readyz' || route === '/metrics') return
    // The operator's token id and name (issue 13: "Operator identity appears in the request logs too").
    req.log.info({ method: req.method, route, url: req.url, status: reply.statusCode, ms: Math.round(reply.elapsedTime * 10) / 10, operator: req.operator?.tokenId, operatorName: req.operator?.name }, 'request')
  })
  installProblemDetails(app)
  installJsonBody(app)
  app.addSchema(Problem)

  await app.register(fastifySwagger, {
    openapi: {
      // servers, license, tags and the problem+json errors: devices/openapi-document.ts
      info: OPENAPI_INFO,
      servers: OPENAPI_SERVERS,
      tags: OPENAPI_TAGS,
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
      security: [{ bearer: [] }]
    },
    refResolver: { buildLocalReference: (json, _base, _fragment, i) => (json.$id as string | undefined) ?? `def-${i}` },
    transformObject: (doc) => finishOpenApiDocument('openapiObject' in doc ? doc.openapiObject : doc.swaggerObject)
  })
  await app.register(fastifySwaggerUi, { routePrefix: '/docs' })

  // Alive while the event loop turns: a stalled loop cannot answer at all.
  app.get('/healthz', { schema: { hide: true } }, async (_req, reply) => {
    const problem = opts.health?.check()
    if (problem) return reply.code(503).send({ status: 'unhealthy', reason: problem })
    return { status: 'ok' }
  })

  app.get('/readyz', { schema: { hide: true } }, async (_req, reply) => {
    const reason = await opts.readiness.check()
    if (reason) return reply.code(503).send({ status: 'not_ready', reason })
    return { status: 'ready' }
  })

  app.get('/metrics', { schema: { hide: true } }, async (_req, reply) => {
    reply.header('content-type', opts.metrics.registry.contentType)
    return await opts.metrics.registry.metrics()
  })

  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger())

  if (opts.controlPlane) await app.register(controlPlane, opts.controlPlane)
  // The console signs operators in with the control plane's own token check.
  if (opts.controlPlane && opts.console !== false) await app.register(consolePlugin, { auth: opts.controlPlane.auth })
  await app.ready()
  return app
}

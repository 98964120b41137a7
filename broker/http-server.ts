// The HTTP side of the broker process: liveness, readiness and metrics now;
// the control-plane REST API (devices/) registers its routes here too.
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify'
import type { Logger } from './logger.js'
import type { Metrics } from './metrics.js'

export interface Readiness {
  /** undefined when ready; otherwise the reason it is not. */
  check (): Promise<string | undefined>
}

export interface HttpServerOptions {
  log: Logger
  metrics: Metrics
  readiness: Readiness
}

export function createHttpServer (opts: HttpServerOptions): FastifyInstance {
  const app = Fastify({
    loggerInstance: opts.log as FastifyBaseLogger,
    // Probes and scrapes arrive every few seconds: not worth a log line each.
    logController: new LogController({ disableRequestLogging: (req) => req.url === '/healthz' || req.url === '/readyz' || req.url === '/metrics' }),
    // Health probes and scrapes must not wait behind a slow client.
    connectionTimeout: 30_000,
    requestIdHeader: 'x-request-id'
  })

  // Alive while the event loop turns: a stalled loop cannot answer at all.
  app.get('/healthz', async () => ({ status: 'ok' }))

  app.get('/readyz', async (_req, reply) => {
    const reason = await opts.readiness.check()
    if (reason) return reply.code(503).send({ status: 'not_ready', reason })
    return { status: 'ready' }
  })

  app.get('/metrics', async (_req, reply) => {
    reply.header('content-type', opts.metrics.registry.contentType)
    return await opts.metrics.registry.metrics()
  })

  return app
}

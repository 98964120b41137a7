// The REST control plane (issue 3): one fastify plugin under /v1, composed
// here from one route plugin per resource (devices/routes/<resource>.ts).
// This file holds what they share: operator authentication on every
// request, the per-token rate limit, and the stores they are given. Its
// dependencies are created by the broker's composition root and passed in;
// it reaches devices only through DeviceDispatch. The shared Problem schema
// is registered with the server (broker/http-server.ts), and the error
// handler that turns ApiErrors and DomainErrors into problem+json is
// devices/problem-details.ts.
import type { FastifyInstance } from 'fastify'
import fastifyRateLimit from '@fastify/rate-limit'
import type pg from 'pg'
import { ApiError } from './api-error.js'
import type { ChangeFeed, DeviceDispatch } from './dispatch.js'
import type { DeviceStore } from './device-store.js'
import type { ConfigStore } from './config-store.js'
import type { CommandStore } from './command-store.js'
import type { RolloutRunner } from './rollout-runner.js'
import type { TokenStore } from './token-store.js'
import type { OperatorAuth } from './operator-auth.js'
import type { EventHub } from './fleet-events.js'
import { createTelemetryStore, type TelemetryStore } from './telemetry-store.js'
import { deviceRoutes } from './routes/devices.js'
import { configRoutes } from './routes/config.js'
import { commandRoutes } from './routes/commands.js'
import { rolloutRoutes } from './routes/rollouts.js'
import { telemetryRoutes } from './routes/telemetry.js'
import { tokenRoutes } from './routes/tokens.js'
import { deadLetterRoutes } from './routes/dead-letters.js'
import { createDeadLetterStore, type DeadLetterStore } from './dead-letter-store.js'
import { auditRoutes } from './routes/audit.js'
import { createAuditStore, type AuditStore } from './audit-store.js'
import { overviewRoutes } from './routes/overview.js'
import { eventRoutes, type EventStreamLimits } from './routes/events.js'
import type { ReplicaStats } from './replica-stats.js'

export interface ControlPlaneDeps {
  pool: pg.Pool
  devices: DeviceStore
  configs: ConfigStore
  commands: CommandStore
  rollouts: RolloutRunner
  tokens: TokenStore
  /** The fleet's events: stored kinds are published after their change commits (devices/change-recorder.ts). */
  events: EventHub
  /** The audit trail (GET /v1/audit). Default: an audit store on `pool`. */
  audit?: AuditStore
  /** Default: a telemetry store on `pool`. */
  telemetry?: TelemetryStore
  /** GET /v1/dead-letters. Default: a dead letter store on `pool`. */
  deadLetters?: DeadLetterStore
  auth: OperatorAuth
  dispatch: DeviceDispatch
  changes: ChangeFeed
  rateLimitPerMinute: number
  /** Longest `waitSeconds` on GET /v1/commands/{id}. */
  maxWaitSeconds: number
  onCommandStatus? (status: string): void
  /** This replica's rates, ingest and readiness for GET /v1/overview (the broker provides them). */
  stats?: ReplicaStats
  /** GET /v1/events: limits (default: DEFAULT_EVENT_STREAM_LIMITS) and metrics of the event streams. */
  eventStreams?: { limits: EventStreamLimits, onStreams? (delta: number): void, onSent? (n: number): void, onDropped? (n: number): void }
}

const DEFAULT_EVENT_STREAM_LIMITS: EventStreamLimits = { bufferEvents: 1000, maxPerToken: 10, maxTotal: 200, heartbeatMs: 15_000 }

export async function controlPlane (root: FastifyInstance, deps: ControlPlaneDeps): Promise<void> {
  const { auth } = deps
  await root.register(async (v1) => {
    // Every /v1 route needs an operator; the scope each needs is the route's own preHandler.
    v1.addHook('onRequest', auth.authenticate)
    // Per token once the operator is known (after onRequest), so that one
    // busy script does not starve the others behind the same address.
    await v1.register(fastifyRateLimit, {
      max: deps.rateLimitPerMinute,
      timeWindow: 60_000,
      hook: 'preHandler',
      keyGenerator: (req) => req.operator?.tokenId ?? req.ip,
      errorResponseBuilder: (_req, ctx) => new ApiError(429, 'rate_limited', `rate limit of ${ctx.max} requests per minute exceeded; retry in ${Math.ceil(ctx.ttl / 1000)} s`, { 'retry-after': String(Math.ceil(ctx.ttl / 1000)) })
    })
    // Registered in this order so that /openapi.json lists the paths as it always has.
    const audit = deps.audit ?? createAuditStore(deps.pool)
    await v1.register(deviceRoutes, { auth, devices: deps.devices, dispatch: deps.dispatch, pool: deps.pool, events: deps.events, audit })
    await v1.register(configRoutes, { auth, configs: deps.configs, dispatch: deps.dispatch })
    await v1.register(commandRoutes, {
      auth,
      devices: deps.devices,
      commands: deps.commands,
      dispatch: deps.dispatch,
      changes: deps.changes,
      pool: deps.pool,
      events: deps.events,
      maxWaitSeconds: deps.maxWaitSeconds,
      onCommandStatus: deps.onCommandStatus
    })
    await v1.register(rolloutRoutes, { auth, rollouts: deps.rollouts })
    await v1.register(telemetryRoutes, { auth, devices: deps.devices, telemetry: deps.telemetry ?? createTelemetryStore(deps.pool) })
    await v1.register(deadLetterRoutes, { auth, deadLetters: deps.deadLetters ?? createDeadLetterStore(deps.pool) })
    await v1.register(tokenRoutes, { auth, tokens: deps.tokens, pool: deps.pool, events: deps.events })
    await v1.register(auditRoutes, { auth, audit })
    await v1.register(overviewRoutes, { auth, pool: deps.pool, stats: deps.stats })
    await v1.register(eventRoutes, { auth, pool: deps.pool, events: deps.events, limits: DEFAULT_EVENT_STREAM_LIMITS, ...deps.eventStreams })
  }, { prefix: '/v1' })
}

// /v1/rollouts (issue 3, issue 13): one config, or one command, for every
// device matching a label selector, pushed at a rate by
// devices/rollout-runner.ts; listed, previewed, paused, resumed and
// cancelled by operators, and paused by itself when its failures cross
// maxFailures or maxFailureRatio.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import { ApiError } from '../api-error.js'
import { found } from '../domain-error.js'
import { parseLabelSelector } from '../label-selector.js'
import { actorOf, type OperatorAuth } from '../operator-auth.js'
import { CURSOR, decodeCursor, encodeCursor } from '../pagination.js'
import { TARGET_STATES, type Rollout as RolloutT, type RolloutRunner, type RolloutStatus, type TargetState } from '../rollout-runner.js'
import { Cursor, JsonObject, Limit, OpaqueIdParams, errors, iso, literals, nullable, page } from '../schemas.js'

const Selector = Type.String({ maxLength: 2000, description: 'label selector, e.g. site=berlin,tier=edge (empty: every device)' })
const MaxFailures = Type.Integer({ minimum: 0, maximum: 2_147_483_647, description: 'pause once more targets than this failed (config: reported failed; command: failed or expired)' })
const MaxFailureRatio = Type.Number({ minimum: 0, maximum: 1, description: 'pause once the failed share of finished targets (applied + failed + expired) is above this' })

const RolloutCommand = Type.Object({
  name: Type.String({ minLength: 1, maxLength: 100 }),
  params: Type.Optional(JsonObject),
  ttlSeconds: Type.Optional(Type.Integer({ minimum: 1, maximum: 2_592_000, default: 3600, description: "each target's command expires this long after it is pushed" }))
}, { additionalProperties: false })

const NewRolloutBody = Type.Object({
  selector: Selector,
  config: Type.Optional(JsonObject),
  command: Type.Optional(RolloutCommand),
  ratePerSecond: Type.Optional(Type.Integer({ minimum: 1, maximum: 1_000_000, description: 'devices per second; absent: as fast as possible' })),
  maxFailures: Type.Optional(MaxFailures),
  maxFailureRatio: Type.Optional(MaxFailureRatio)
}, { additionalProperties: false, description: 'exactly one of config and command' })

const ResumeBody = nullable(Type.Object({
  maxFailures: Type.Optional(nullable(MaxFailures)),
  maxFailureRatio: Type.Optional(nullable(MaxFailureRatio))
}, { additionalProperties: false, description: 'optional: new thresholds (null removes one); absent: unchanged' }))

const Counts = Type.Object({
  targeted: Type.Integer(),
  pending: Type.Integer({ description: 'not pushed yet' }),
  delivered: Type.Integer({ description: 'pushed, no answer yet' }),
  applied: Type.Integer({ description: 'config version (or a later one) reported applied; command succeeded' }),
  failed: Type.Integer({ description: 'config version reported failed; command failed' }),
  expired: Type.Integer({ description: 'command expired or cancelled without a result' }),
  pushed: Type.Integer({ description: 'delivered + applied + failed + expired' }),
  inSync: Type.Integer({ description: 'same as applied (kept for compatibility)' })
})

const Rollout = Type.Object({
  id: Type.String({ format: 'uuid' }),
  kind: Type.Union([Type.Literal('config'), Type.Literal('command')]),
  selector: Type.Record(Type.String(), Type.String()),
  config: Type.Unknown({ description: 'null for a command rollout' }),
  command: Type.Union([Type.Object({ name: Type.String(), params: JsonObject, ttlSeconds: Type.Integer() }), Type.Null()]),
  ratePerSecond: Type.Union([Type.Integer(), Type.Null()]),
  maxFailures: Type.Union([Type.Integer(), Type.Null()]),
  maxFailureRatio: Type.Union([Type.Number(), Type.Null()]),
  status: literals(['running', 'paused', 'cancelled', 'completed']),
  pauseReason: Type.Union([Type.String(), Type.Null()], { description: 'why it paused itself; null when running or paused by an operator' }),
  createdAt: Type.String({ format: 'date-time' }),
  updatedAt: Type.String({ format: 'date-time' }),
  counts: Counts
})

const ROLLOUT_EXAMPLE = {
  id: '0f8e2a4c-5b1d-4c6e-9a7f-3d2b1c0e9f8a',
  kind: 'config',
  selector: { site: 'berlin', tier: 'edge' },
  config: { fw: '3.1' },
  command: null,
  ratePerSecond: 50,
  maxFailures: 10,
  maxFailureRatio: 0.05,
  status: 'paused',
  pauseReason: '11 failures exceeded maxFailures 10',
  createdAt: '2026-11-29T10:00:00.000Z',
  updatedAt: '2026-11-29T10:02:10.000Z',
  counts: { targeted: 5000, pending: 3400, delivered: 80, applied: 1509, failed: 11, expired: 0, pushed: 1600, inSync: 1509 }
}
const RolloutWithExample = { ...Rollout, examples: [ROLLOUT_EXAMPLE] }
const RolloutPage = { ...page(Rollout), examples: [{ items: [ROLLOUT_EXAMPLE], nextCursor: 'WyIyMDI2LTExLTI5IDEwOjAwOjAwKzAwIiwiMGY4ZTJhNGMtNWIxZC00YzZlLTlhN2YtM2QyYjFjMGU5ZjhhIl0' }] }

const ListQuery = Type.Object({
  status: Type.Optional(literals(['running', 'paused', 'cancelled', 'completed'])),
  limit: Limit,
  cursor: Type.Optional(Cursor)
}, { additionalProperties: false })

const TargetQuery = Type.Object({
  state: Type.Optional(literals(TARGET_STATES)),
  limit: Limit,
  cursor: Type.Optional(Cursor)
}, { additionalProperties: false })

const Target = Type.Object({
  deviceId: Type.String(),
  state: literals(TARGET_STATES),
  version: Type.Union([Type.Integer(), Type.Null()], { description: 'config rollouts: the desired version it was given' }),
  commandId: Type.Union([Type.String({ format: 'uuid' }), Type.Null()], { description: 'command rollouts: the command it was sent' }),
  pushedAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  error: Type.Union([Type.String(), Type.Null()], { description: "a failed config target: the device's error text" })
})

const TargetPage = {
  ...page(Target),
  examples: [{
    items: [{ deviceId: 'sensor-17', state: 'failed', version: 4, commandId: null, pushedAt: '2026-11-29T10:01:02.000Z', error: 'flash write error' }],
    nextCursor: null
  }]
}

const Preview = Type.Object({ targets: Type.Integer({ description: 'enabled devices matching the selector now' }) }, { examples: [{ targets: 5000 }] })

const PreviewQuery = Type.Object({ selector: Type.Optional(Selector) }, { additionalProperties: false })

const rolloutJson = (r: RolloutT) => ({
  id: r.id,
  kind: r.kind,
  selector: r.selector,
  config: r.config,
  command: r.command,
  ratePerSecond: r.ratePerSecond,
  maxFailures: r.maxFailures,
  maxFailureRatio: r.maxFailureRatio,
  status: r.status,
  pauseReason: r.pauseReason,
  createdAt: iso(r.createdAt),
  updatedAt: iso(r.updatedAt),
  counts: r.counts
})

export interface RolloutRoutesOptions { auth: OperatorAuth, rollouts: RolloutRunner }

export const rolloutRoutes: FastifyPluginAsyncTypebox<RolloutRoutesOptions> = async (app, { auth, rollouts }) => {
  const read = { preHandler: auth.require('read') }
  const write = { preHandler: auth.require('write') }

  app.post('/rollouts', { ...write, schema: { operationId: 'createRollout', tags: ['rollouts'], summary: 'Set a config on, or send a command to, every device matching a selector, at a rate', body: NewRolloutBody, response: { 201: RolloutWithExample, ...errors(400) } } },
    async (req, reply) => {
      const { config, command } = req.body
      if ((config === undefined) === (command === undefined)) throw new ApiError(400, 'invalid_request', 'give exactly one of config and command')
      const r = await rollouts.create({
        selector: parseLabelSelector(req.body.selector),
        config,
        command: command && { name: command.name, params: command.params ?? {}, ttlSeconds: command.ttlSeconds ?? 3600 },
        ratePerSecond: req.body.ratePerSecond ?? null,
        maxFailures: req.body.maxFailures ?? null,
        maxFailureRatio: req.body.maxFailureRatio ?? null
      }, actorOf(req))
      return reply.code(201).header('location', `/v1/rollouts/${r.id}`).send(rolloutJson(r))
    })

  app.get('/rollouts', { ...read, schema: { operationId: 'listRollouts', tags: ['rollouts'], summary: 'Rollouts, newest first', querystring: ListQuery, response: { 200: RolloutPage, ...errors(400) } } },
    async (req) => {
      const after = decodeCursor(req.query.cursor, [CURSOR.timestamp, CURSOR.uuid]) as [string, string] | undefined
      const items = await rollouts.list({ status: req.query.status as RolloutStatus | undefined, limit: req.query.limit, after })
      const last = items.at(-1)
      return { items: items.map(rolloutJson), nextCursor: last && items.length === req.query.limit ? encodeCursor(last.cursor) : null }
    })

  // Registered before /rollouts/:id would match it (find-my-way prefers the static path anyway).
  app.get('/rollouts/preview', { ...read, schema: { operationId: 'previewRollout', tags: ['rollouts'], summary: 'How many devices a rollout with this selector would target now', querystring: PreviewQuery, response: { 200: Preview, ...errors(400) } } },
    async (req) => ({ targets: await rollouts.preview(parseLabelSelector(req.query.selector ?? '')) }))

  app.get('/rollouts/:id', { ...read, schema: { operationId: 'getRollout', tags: ['rollouts'], summary: 'A rollout with its counts by target state', params: OpaqueIdParams, response: { 200: RolloutWithExample, ...errors(404) } } },
    async (req) => rolloutJson(found(await rollouts.get(req.params.id), `rollout ${req.params.id}`)))

  // Which devices failed, and why: what an operator looks at after a pause.
  app.get('/rollouts/:id/targets', { ...read, schema: { operationId: 'listRolloutTargets', tags: ['rollouts'], summary: "A rollout's devices with their state, in device id order", params: OpaqueIdParams, querystring: TargetQuery, response: { 200: TargetPage, ...errors(400, 404) } } },
    async (req) => {
      const after = decodeCursor(req.query.cursor, [CURSOR.deviceId])
      const items = found(await rollouts.targets(req.params.id, { state: req.query.state as TargetState | undefined, limit: req.query.limit, after: after?.[0] }), `rollout ${req.params.id}`)
      const last = items.at(-1)
      return { items: items.map((x) => ({ ...x, pushedAt: iso(x.pushedAt) })), nextCursor: last && items.length === req.query.limit ? encodeCursor([last.deviceId]) : null }
    })

  for (const action of ['pause', 'cancel'] as const) {
    app.post(`/rollouts/:id/${action}`, { ...write, schema: { operationId: `${action}Rollout`, tags: ['rollouts'], summary: `${action[0]!.toUpperCase()}${action.slice(1)} a rollout`, params: OpaqueIdParams, response: { 200: RolloutWithExample, ...errors(404, 409) } } },
      async (req) => rolloutJson(await rollouts.setStatus(req.params.id, action, actorOf(req))))
  }

  // A rollout that paused itself is checked again before its next step: it
  // pauses again at once if it is still over a threshold, unless the resume
  // raises (or removes) it.
  app.post('/rollouts/:id/resume', { ...write, schema: { operationId: 'resumeRollout', tags: ['rollouts'], summary: 'Resume a paused rollout, optionally with new thresholds', params: OpaqueIdParams, body: ResumeBody, response: { 200: RolloutWithExample, ...errors(400, 404, 409) } } },
    async (req) => rolloutJson(await rollouts.setStatus(req.params.id, 'resume', actorOf(req), req.body ?? undefined)))
}

// /v1/rollouts (issue 3): one config for every device matching a label
// selector, pushed at a rate by devices/rollout-runner.ts, which can be
// paused, resumed and cancelled.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import { found } from '../domain-error.js'
import { parseLabelSelector } from '../label-selector.js'
import type { OperatorAuth } from '../operator-auth.js'
import type { Rollout as RolloutT, RolloutRunner } from '../rollout-runner.js'
import { JsonObject, OpaqueIdParams, errors, iso } from '../schemas.js'

const NewRolloutBody = Type.Object({
  selector: Type.String({ maxLength: 2000, description: 'label selector, e.g. site=berlin,tier=edge (empty: every device)' }),
  config: JsonObject,
  ratePerSecond: Type.Optional(Type.Integer({ minimum: 1, maximum: 1_000_000, description: 'devices per second; absent: as fast as possible' }))
}, { additionalProperties: false })

const Rollout = Type.Object({
  id: Type.String({ format: 'uuid' }),
  selector: Type.Record(Type.String(), Type.String()),
  config: Type.Unknown(),
  ratePerSecond: Type.Union([Type.Integer(), Type.Null()]),
  status: Type.Union(['running', 'paused', 'cancelled', 'completed'].map((s) => Type.Literal(s))),
  createdAt: Type.String({ format: 'date-time' }),
  updatedAt: Type.String({ format: 'date-time' }),
  counts: Type.Object({ targeted: Type.Integer(), pushed: Type.Integer(), inSync: Type.Integer(), pending: Type.Integer() })
})

const rolloutJson = (r: RolloutT) => ({ ...r, createdAt: iso(r.createdAt), updatedAt: iso(r.updatedAt) })

export interface RolloutRoutesOptions { auth: OperatorAuth, rollouts: RolloutRunner }

export const rolloutRoutes: FastifyPluginAsyncTypebox<RolloutRoutesOptions> = async (app, { auth, rollouts }) => {
  const read = { preHandler: auth.require('read') }
  const write = { preHandler: auth.require('write') }

  app.post('/rollouts', { ...write, schema: { tags: ['rollouts'], summary: 'Set a config on every device matching a selector, pushed at a rate', body: NewRolloutBody, response: { 201: Rollout, ...errors(400) } } },
    async (req, reply) => reply.code(201).send(rolloutJson(await rollouts.create(parseLabelSelector(req.body.selector), req.body.config, req.body.ratePerSecond ?? null))))

  app.get('/rollouts/:id', { ...read, schema: { tags: ['rollouts'], summary: 'A rollout with its counts', params: OpaqueIdParams, response: { 200: Rollout, ...errors(404) } } },
    async (req) => rolloutJson(found(await rollouts.get(req.params.id), `rollout ${req.params.id}`)))

  for (const action of ['pause', 'resume', 'cancel'] as const) {
    app.post(`/rollouts/:id/${action}`, { ...write, schema: { tags: ['rollouts'], summary: `${action[0]!.toUpperCase()}${action.slice(1)} a rollout`, params: OpaqueIdParams, response: { 200: Rollout, ...errors(404, 409) } } },
      async (req) => rolloutJson(await rollouts.setStatus(req.params.id, action)))
  }
}

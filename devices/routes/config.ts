// /v1/devices/{id}/config: a device's desired and reported configuration
// (issue 3). A new desired version is stored first (PostgreSQL is the source
// of truth), then pushed; a device that is not connected gets it when it
// subscribes (devices/device-sessions.ts).
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import type { ConfigStore } from '../config-store.js'
import type { DeviceDispatch } from '../dispatch.js'
import type { OperatorAuth } from '../operator-auth.js'
import { IdParams, JsonObject, errors, iso } from '../schemas.js'
import { topics } from '../topics.js'

const PutConfigBody = Type.Object({
  config: JsonObject,
  ifVersion: Type.Optional(Type.Integer({ minimum: 0, maximum: 2_147_483_647, description: 'apply only if the desired version is this (0: none yet); 409 otherwise' }))
}, { additionalProperties: false })

const PutConfigResult = Type.Object({ version: Type.Integer(), config: Type.Unknown(), delivered: Type.Boolean() })

const ConfigState = Type.Object({
  desired: Type.Union([Type.Object({ version: Type.Integer(), config: Type.Unknown(), updatedAt: Type.String({ format: 'date-time' }) }), Type.Null()]),
  reported: Type.Union([Type.Object({ version: Type.Integer(), config: Type.Unknown(), updatedAt: Type.String({ format: 'date-time' }) }), Type.Null()]),
  inSync: Type.Boolean()
})

export interface ConfigRoutesOptions { auth: OperatorAuth, configs: ConfigStore, dispatch: DeviceDispatch }

export const configRoutes: FastifyPluginAsyncTypebox<ConfigRoutesOptions> = async (app, { auth, configs, dispatch }) => {
  const read = { preHandler: auth.require('read') }
  const write = { preHandler: auth.require('write') }

  app.put('/devices/:id/config', { ...write, schema: { tags: ['config'], summary: 'Store a new desired config version and push it', params: IdParams, body: PutConfigBody, response: { 200: PutConfigResult, ...errors(400, 404, 409) } } },
    async (req) => {
      const msg = await configs.setDesired(req.params.id, req.body.config, req.body.ifVersion)
      const delivered = await dispatch.deliver(req.params.id, topics.config(req.params.id), msg)
      return { ...msg, delivered }
    })

  app.get('/devices/:id/config', { ...read, schema: { tags: ['config'], summary: 'Desired and reported config, and whether they are in sync', params: IdParams, response: { 200: ConfigState, ...errors(404) } } },
    async (req) => {
      const s = await configs.get(req.params.id)
      return {
        desired: s.desired && { ...s.desired, updatedAt: iso(s.desired.updatedAt) },
        reported: s.reported && { ...s.reported, updatedAt: iso(s.reported.updatedAt) },
        inSync: s.inSync
      }
    })
}

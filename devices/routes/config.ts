// /v1/devices/{id}/config: a device's desired and reported configuration
// (issue 3), its history and rollback (issue 13). A new desired version is
// stored first (PostgreSQL is the source of truth), then pushed; a device
// that is not connected gets it when it subscribes (devices/device-sessions.ts).
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import type { ConfigMessage, ConfigStore, ConfigVersion as ConfigVersionT } from '../config-store.js'
import type { DeviceDispatch } from '../dispatch.js'
import { actorOf, type OperatorAuth } from '../operator-auth.js'
import { decodeCursor, encodeCursor } from '../pagination.js'
import { Cursor, IdParams, JsonObject, Limit, errors, iso, literals, page } from '../schemas.js'
import { topics } from '../topics.js'

const Version = Type.Integer({ minimum: 1, maximum: 2_147_483_647 })

const PutConfigBody = Type.Object({
  config: JsonObject,
  ifVersion: Type.Optional(Type.Integer({ minimum: 0, maximum: 2_147_483_647, description: 'apply only if the desired version is this (0: none yet); 409 otherwise' }))
}, { additionalProperties: false })

const RollbackBody = Type.Object({
  toVersion: { ...Version, description: 'the version whose config becomes desired again (as a new version)' }
}, { additionalProperties: false })

const PutConfigResult = Type.Object({
  version: Type.Integer(),
  config: Type.Unknown(),
  delivered: Type.Boolean({ description: 'a connection of the device took it now; otherwise it gets it when it subscribes' })
}, { examples: [{ version: 4, config: { interval: 30, mode: 'eco' }, delivered: true }] })

const ConfigState = Type.Object({
  desired: Type.Union([Type.Object({ version: Type.Integer(), config: Type.Unknown(), updatedAt: Type.String({ format: 'date-time' }) }), Type.Null()]),
  reported: Type.Union([Type.Object({
    version: Type.Integer(),
    config: Type.Unknown(),
    updatedAt: Type.String({ format: 'date-time' }),
    status: Type.Union([Type.Literal('applied'), Type.Literal('failed')]),
    error: Type.Optional(Type.String({ description: "the device's own text, when it reported a failure" }))
  }), Type.Null()]),
  inSync: Type.Boolean(),
  state: literals(['none', 'in_sync', 'pending', 'failed'], { description: 'failed: the device reported the desired version as failed' })
}, {
  examples: [{
    desired: { version: 4, config: { interval: 30, mode: 'eco' }, updatedAt: '2026-11-29T10:15:00.000Z' },
    reported: { version: 4, config: null, updatedAt: '2026-11-29T10:15:01.250Z', status: 'failed', error: 'mode eco not supported by firmware 1.2' },
    inSync: false,
    state: 'failed'
  }]
})

const ConfigVersion = Type.Object({
  version: Type.Integer(),
  config: Type.Unknown(),
  setAt: Type.String({ format: 'date-time' }),
  setBy: Type.Union([Type.Object({ id: Type.String(), name: Type.String() }), Type.Null()], { description: "the operator's token (for a rollout: its creator); null for versions set before history was kept" }),
  source: literals(['api', 'rollback', 'rollout']),
  rolloutId: Type.Optional(Type.String({ format: 'uuid' }))
})

/** A version in a cursor: what PostgreSQL's integer holds (a tampered cursor is 400, never a failed cast). */
const isVersion = (s: string) => /^[1-9]\d{0,9}$/.test(s) && Number(s) <= 2_147_483_647

const HistoryPage = {
  ...page(ConfigVersion),
  examples: [{
    items: [
      { version: 5, config: { interval: 30 }, setAt: '2026-11-29T11:00:00.000Z', setBy: { id: 'admin', name: 'admin' }, source: 'rollback' },
      { version: 4, config: { interval: 30, mode: 'eco' }, setAt: '2026-11-29T10:15:00.000Z', setBy: { id: 'tok_8f2c', name: 'ci-deploy' }, source: 'rollout', rolloutId: '0f8e2a4c-5b1d-4c6e-9a7f-3d2b1c0e9f8a' }
    ],
    nextCursor: 'WyI0Il0'
  }]
}

const HistoryQuery = Type.Object({ limit: Limit, cursor: Type.Optional(Cursor) }, { additionalProperties: false })

const versionJson = (v: ConfigVersionT) => ({
  version: v.version,
  config: v.config,
  setAt: iso(v.setAt),
  setBy: v.setBy,
  source: v.source,
  ...(v.rolloutId ? { rolloutId: v.rolloutId } : {})
})

export interface ConfigRoutesOptions { auth: OperatorAuth, configs: ConfigStore, dispatch: DeviceDispatch }

export const configRoutes: FastifyPluginAsyncTypebox<ConfigRoutesOptions> = async (app, { auth, configs, dispatch }) => {
  const read = { preHandler: auth.require('read') }
  const write = { preHandler: auth.require('write') }
  const push = async (deviceId: string, msg: ConfigMessage) => ({ ...msg, delivered: await dispatch.deliver(deviceId, topics.config(deviceId), msg) })

  app.put('/devices/:id/config', { ...write, schema: { operationId: 'setDeviceConfig', tags: ['config'], summary: 'Store a new desired config version and push it', params: IdParams, body: PutConfigBody, response: { 200: PutConfigResult, ...errors(400, 404, 409) } } },
    async (req) => await push(req.params.id, await configs.setDesired(req.params.id, req.body.config, req.body.ifVersion, actorOf(req))))

  app.get('/devices/:id/config', { ...read, schema: { operationId: 'getDeviceConfig', tags: ['config'], summary: 'Desired and reported config, and the config state', params: IdParams, response: { 200: ConfigState, ...errors(404) } } },
    async (req) => {
      const s = await configs.get(req.params.id)
      const r = s.reported
      return {
        desired: s.desired && { ...s.desired, updatedAt: iso(s.desired.updatedAt) },
        reported: r && { version: r.version, config: r.config, updatedAt: iso(r.updatedAt), status: r.status, ...(r.error !== null ? { error: r.error } : {}) },
        inSync: s.inSync,
        state: s.state
      }
    })

  app.get('/devices/:id/config/history', { ...read, schema: { operationId: 'listDeviceConfigHistory', tags: ['config'], summary: 'Every desired version, newest first, with who set it', params: IdParams, querystring: HistoryQuery, response: { 200: HistoryPage, ...errors(400, 404) } } },
    async (req) => {
      const before = decodeCursor(req.query.cursor, [isVersion])
      const items = await configs.history(req.params.id, req.query.limit, before ? Number(before[0]) : undefined)
      const last = items.at(-1)
      return { items: items.map(versionJson), nextCursor: last && items.length === req.query.limit && last.version > 1 ? encodeCursor([String(last.version)]) : null }
    })

  // A new version (not a reset of the version counter): devices and caches
  // that only accept increasing versions take it like any other.
  app.post('/devices/:id/config/rollback', { ...write, schema: { operationId: 'rollbackDeviceConfig', tags: ['config'], summary: 'Make an earlier version desired again, as a new version, and push it', description: '404 not_found for an unknown device, and for a version the device never had (the detail names it).', params: IdParams, body: RollbackBody, response: { 200: PutConfigResult, ...errors(400, 404) } } },
    async (req) => await push(req.params.id, await configs.rollback(req.params.id, req.body.toVersion, actorOf(req))))
}

// /v1/devices: the registry (issue 3). Registering one device or many,
// listing with label selectors, reading, changing, deleting, rotating the
// secret. A device's config, commands and telemetry have their own files.
import type { FastifyRequest } from 'fastify'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type, type Static } from '@sinclair/typebox'
import { ApiError } from '../api-error.js'
import type { DeviceDispatch } from '../dispatch.js'
import { found } from '../domain-error.js'
import type { DeviceStore, DeviceView } from '../device-store.js'
import { parseLabelSelector } from '../label-selector.js'
import { LABEL_KEY_PATTERN, LABEL_VALUE_MAX_LENGTH, LABEL_VALUE_PATTERN, labelsError } from '../labels.js'
import type { OperatorAuth } from '../operator-auth.js'
import { CURSOR, decodeCursor, encodeCursor } from '../pagination.js'
import { Cursor, DeviceId, IdParams, Limit, errors, iso, page } from '../schemas.js'
import { streamBulkCreation } from './bulk-stream.js'

// Rules from devices/labels.ts. additionalProperties: false, because a
// Record's key pattern alone (patternProperties) lets any other key through.
const Labels = Type.Record(Type.String({ pattern: LABEL_KEY_PATTERN }), Type.String({ maxLength: LABEL_VALUE_MAX_LENGTH, pattern: LABEL_VALUE_PATTERN }), { additionalProperties: false, description: 'string → string' })

const NewDeviceBody = Type.Object({
  id: Type.Optional(DeviceId),
  name: Type.Optional(Type.String({ maxLength: 200 })),
  labels: Type.Optional(Labels)
}, { additionalProperties: false })

const CreatedDevice = Type.Object({ id: Type.String(), secret: Type.String({ description: 'shown only now' }) })

const Device = Type.Object({
  id: Type.String(),
  name: Type.Union([Type.String(), Type.Null()]),
  labels: Type.Record(Type.String(), Type.String()),
  disabled: Type.Boolean(),
  createdAt: Type.String({ format: 'date-time' }),
  updatedAt: Type.String({ format: 'date-time' }),
  online: Type.Boolean(),
  connectedAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  lastSeenAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  config: Type.Object({
    desiredVersion: Type.Union([Type.Integer(), Type.Null()]),
    reportedVersion: Type.Union([Type.Integer(), Type.Null()]),
    inSync: Type.Boolean()
  })
})

const BulkBody = Type.Union([
  Type.Object({
    count: Type.Integer({ minimum: 1, maximum: 1_000_000 }),
    idPrefix: Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,100}$' }),
    labels: Type.Optional(Labels)
  }, { additionalProperties: false }),
  Type.Object({ devices: Type.Array(NewDeviceBody, { minItems: 1, maxItems: 100_000 }) }, { additionalProperties: false })
])

const PatchDeviceBody = Type.Object({
  name: Type.Optional(Type.Union([Type.String({ maxLength: 200 }), Type.Null()])),
  labels: Type.Optional(Labels),
  disabled: Type.Optional(Type.Boolean())
}, { additionalProperties: false, minProperties: 1 })

const DeviceListQuery = Type.Object({
  labels: Type.Optional(Type.String({ maxLength: 2000, description: 'label selector: site=berlin,tier=edge (each key once)' })),
  online: Type.Optional(Type.Boolean()),
  limit: Limit,
  cursor: Type.Optional(Cursor)
}, { additionalProperties: false })

const deviceJson = (d: DeviceView) => ({ ...d, createdAt: iso(d.createdAt), updatedAt: iso(d.updatedAt), connectedAt: iso(d.connectedAt), lastSeenAt: iso(d.lastSeenAt) })

/**
 * Labels in a device body (top level, or each of `devices` in a bulk body),
 * checked before schema validation so that the API refuses a label with the
 * message of devices/labels.ts, the same the CLI and selectors give. The
 * schema (Labels) still checks everything else and documents the rules.
 */
async function labelsFirst (req: FastifyRequest): Promise<void> {
  const body = req.body as { labels?: unknown, devices?: unknown } | null
  if (typeof body !== 'object' || body === null) return
  const sets = [body.labels, ...(Array.isArray(body.devices) ? body.devices.map((d: { labels?: unknown } | null) => d?.labels) : [])]
  for (const labels of sets) {
    if (typeof labels !== 'object' || labels === null || Array.isArray(labels)) continue
    const problem = labelsError(labels as Record<string, unknown>)
    if (problem) throw new ApiError(400, 'invalid_request', problem)
  }
}

export interface DeviceRoutesOptions { auth: OperatorAuth, devices: DeviceStore, dispatch: DeviceDispatch }

export const deviceRoutes: FastifyPluginAsyncTypebox<DeviceRoutesOptions> = async (app, { auth, devices, dispatch }) => {
  const read = { preHandler: auth.require('read') }
  const write = { preHandler: auth.require('write') }

  app.post('/devices', { ...write, preValidation: labelsFirst, schema: { tags: ['devices'], summary: 'Register a device; the secret is returned only here', body: NewDeviceBody, response: { 201: CreatedDevice, ...errors(400, 409) } } },
    async (req, reply) => reply.code(201).send(await devices.create(req.body)))

  app.post('/devices/bulk', { ...write, preValidation: labelsFirst, bodyLimit: 64 * 1024 * 1024, schema: { tags: ['devices'], summary: 'Register many devices; streams NDJSON lines {id, secret} or {id, error}', body: BulkBody, response: { ...errors(400) } } },
    async (req, reply) => {
      const body = req.body as Static<typeof BulkBody>
      const list = 'devices' in body
        ? body.devices
        : { count: body.count, make: (i: number) => ({ id: `${body.idPrefix}-${i + 1}`, labels: body.labels }) }
      await streamBulkCreation(req, reply, devices.createMany(list))
    })

  app.get('/devices', { ...read, schema: { tags: ['devices'], summary: 'List devices', querystring: DeviceListQuery, response: { 200: page(Device), ...errors(400) } } },
    async (req) => {
      const after = decodeCursor(req.query.cursor, [CURSOR.deviceId])?.[0]
      const items = await devices.list({ labels: req.query.labels !== undefined ? parseLabelSelector(req.query.labels) : undefined, online: req.query.online, limit: req.query.limit, after })
      return { items: items.map(deviceJson), nextCursor: items.length === req.query.limit ? encodeCursor([items.at(-1)!.id]) : null }
    })

  app.get('/devices/:id', { ...read, schema: { tags: ['devices'], summary: 'A device with presence and config sync state', params: IdParams, response: { 200: Device, ...errors(404) } } },
    async (req) => deviceJson(found(await devices.get(req.params.id), `device ${req.params.id}`)))

  app.patch('/devices/:id', { ...write, preValidation: labelsFirst, schema: { tags: ['devices'], summary: 'Change name, labels or disabled', params: IdParams, body: PatchDeviceBody, response: { 200: Device, ...errors(400, 404) } } },
    async (req) => {
      const d = await devices.update(req.params.id, req.body)
      // A disabled device loses its connection at once (MQTT 5: DISCONNECT
      // 0x98), not at its next reconnect, and its MQTT session ends with it.
      if (req.body.disabled === true) await dispatch.endSession(req.params.id)
      return deviceJson(d)
    })

  app.delete('/devices/:id', { ...write, schema: { tags: ['devices'], summary: 'Delete a device (an online device is disconnected first; its MQTT session is removed)', params: IdParams, response: { 204: Type.Null(), ...errors(404) } } },
    async (req, reply) => {
      // Removed first (and its credentials invalidated), then disconnected
      // and its MQTT session removed: a reconnect in between can no longer
      // authenticate, and a device created again with this id starts clean.
      await devices.remove(req.params.id)
      await dispatch.endSession(req.params.id)
      return reply.code(204).send(null)
    })

  app.post('/devices/:id/secret', { ...write, schema: { tags: ['devices'], summary: 'Rotate the secret; the old one stops working for new connections at once', params: IdParams, response: { 200: CreatedDevice, ...errors(404) } } },
    async (req) => await devices.rotateSecret(req.params.id))
}

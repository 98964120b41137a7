// /v1/devices: the registry (issue 3). Registering one device or many,
// listing with label selectors and filters, reading, changing, deleting,
// rotating the secret, and bulk actions (issue 13). Every change is audited
// and emits `device` events in its own transaction (devices/change-recorder.ts).
// A device's config, commands and telemetry have their own files.
import type { FastifyRequest } from 'fastify'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type, type Static } from 'typebox'
import type pg from 'pg'
import { ApiError } from '../api-error.js'
import type { AuditStore } from '../audit-store.js'
import { withChanges, type ChangeRecorder } from '../change-recorder.js'
import type { DeviceDispatch } from '../dispatch.js'
import { found } from '../domain-error.js'
import { CONFIG_STATES, type BulkAction, type BulkTarget, type DeviceStore, type DeviceSummary, type DeviceView } from '../device-store.js'
import type { EventHub } from '../fleet-events.js'
import { parseLabelSelector } from '../label-selector.js'
import { LABEL_KEY_PATTERN, LABEL_VALUE_MAX_LENGTH, LABEL_VALUE_PATTERN, labelsError } from '../labels.js'
import { actorOf, type OperatorAuth } from '../operator-auth.js'
import { CURSOR, decodeCursor, encodeCursor } from '../pagination.js'
import { Cursor, DeviceId, IdParams, Limit, errors, iso, literals, nullable, page } from '../schemas.js'
import { streamBulkCreation } from './bulk-stream.js'

/** Most ids in one bulk action's list. */
export const BULK_MAX_IDS = 10_000
/** Most devices one bulk action's selector may match (larger: 400, narrow the selector). */
export const BULK_MAX = 100_000
/** Sessions ended at once after a bulk disable or delete. */
const END_SESSION_CONCURRENCY = 32

const ConfigState = literals(CONFIG_STATES, { description: 'none: no config set; in_sync: the desired version is applied; pending: not reported yet; failed: the device reported that applying it failed' })

// Rules from devices/labels.ts. additionalProperties: false, because a
// Record's key pattern alone (patternProperties) lets any other key through.
const Labels = Type.Record(Type.String({ pattern: LABEL_KEY_PATTERN }), Type.String({ maxLength: LABEL_VALUE_MAX_LENGTH, pattern: LABEL_VALUE_PATTERN }), { additionalProperties: false, description: 'string → string' })

const NewDeviceBody = Type.Object({
  id: Type.Optional(DeviceId),
  name: Type.Optional(Type.String({ maxLength: 200 })),
  labels: Type.Optional(Labels)
}, { additionalProperties: false })

const CreatedDevice = Type.Object({ id: Type.String(), secret: Type.String({ description: 'shown only now' }) }, { examples: [{ id: 'sensor-1', secret: '3q0vJ2m5kVh8QwJz5Xb0nA' }] })

const DEVICE_EXAMPLE = {
  id: 'sensor-1',
  name: 'Boiler room',
  labels: { site: 'berlin', tier: 'edge' },
  disabled: false,
  createdAt: '2026-11-29T10:00:00.000Z',
  updatedAt: '2026-11-29T10:00:00.000Z',
  online: true,
  connectedAt: '2026-11-29T10:01:00.000Z',
  lastSeenAt: '2026-11-29T10:05:00.000Z',
  config: { desiredVersion: 2, reportedVersion: 2, inSync: true },
  configState: 'in_sync'
}

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
  }),
  configState: ConfigState
}, { examples: [DEVICE_EXAMPLE] })

const DevicePage = { ...page(Device), examples: [{ items: [DEVICE_EXAMPLE], nextCursor: 'WyJzZW5zb3ItMSJd' }] }

/** The NDJSON lines of POST /v1/devices/bulk (streamed, so not serialised by fastify). */
const BulkLines = {
  description: 'application/x-ndjson: one line per device, `{id, secret}` or `{id, error}` (device_exists, invalid_device_id); a last line `{error, detail, requestId}` if creation stopped part-way',
  content: {
    'application/x-ndjson': {
      // A stream of lines, not one JSON document: documented as the text it is.
      schema: Type.String({ description: 'NDJSON lines' }),
      example: '{"id":"sensor-1","secret":"3q0vJ2m5kVh8QwJz5Xb0nA"}\n{"id":"sensor-2","error":"device_exists"}\n'
    }
  }
}

const BulkBody = Type.Union([
  Type.Object({
    count: Type.Integer({ minimum: 1, maximum: 1_000_000 }),
    idPrefix: Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,100}$' }),
    labels: Type.Optional(Labels)
  }, { additionalProperties: false }),
  Type.Object({ devices: Type.Array(NewDeviceBody, { minItems: 1, maxItems: 100_000 }) }, { additionalProperties: false })
])

const PatchDeviceBody = Type.Object({
  name: Type.Optional(nullable(Type.String({ maxLength: 200, description: 'null removes the name' }))),
  labels: Type.Optional(Labels),
  disabled: Type.Optional(Type.Boolean())
}, { additionalProperties: false, minProperties: 1 })

const Selector = Type.String({ maxLength: 2000, description: 'label selector: site=berlin,tier=edge (each key once)' })

const DeviceListQuery = Type.Object({
  labels: Type.Optional(Selector),
  selector: Type.Optional(Type.String({ maxLength: 2000, description: 'the same as labels (one of the two)' })),
  idPrefix: Type.Optional(Type.String({ minLength: 1, maxLength: 128, description: 'ids starting with this' })),
  online: Type.Optional(Type.Boolean()),
  configState: Type.Optional(ConfigState),
  limit: Limit,
  cursor: Type.Optional(Cursor)
}, { additionalProperties: false })

const BulkActionBody = Type.Object({
  action: Type.Union([Type.Literal('disable'), Type.Literal('enable'), Type.Literal('delete')]),
  ids: Type.Optional(Type.Array(DeviceId, { minItems: 1, maxItems: BULK_MAX_IDS, uniqueItems: true })),
  selector: Type.Optional(Type.String({ minLength: 1, maxLength: 2000, description: `label selector; at most ${BULK_MAX} devices may match` }))
}, { additionalProperties: false, description: 'exactly one of ids and selector' })

const BulkActionResult = Type.Object({
  action: Type.String(),
  matched: Type.Integer({ description: 'devices the ids or selector named' }),
  changed: Type.Integer({ description: 'devices whose state changed (an already disabled device is matched, not changed)' })
}, { examples: [{ action: 'disable', matched: 120, changed: 118 }] })

const deviceJson = (d: DeviceView) => ({ ...d, createdAt: iso(d.createdAt), updatedAt: iso(d.updatedAt), connectedAt: iso(d.connectedAt), lastSeenAt: iso(d.lastSeenAt) })

/** What the audit trail shows of a device view. */
const summaryOf = (d: DeviceSummary | DeviceView): DeviceSummary => ({ id: d.id, name: d.name, labels: d.labels, disabled: d.disabled })

/**
 * Runs `fn` over every item, at most `limit` at a time; one failure does not
 * stop the others (every device is still disconnected that can be), and the
 * first is thrown at the end, as the single form would throw it.
 */
async function eachLimited<T> (items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0
  let failure: { err: unknown } | undefined
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      try { await fn(items[next++]!) } catch (err) { failure ??= { err } }
    }
  }))
  if (failure) throw failure.err
}

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

export interface DeviceRoutesOptions {
  auth: OperatorAuth
  devices: DeviceStore
  dispatch: DeviceDispatch
  /** For the change transactions and their events (devices/change-recorder.ts). */
  pool: pg.Pool
  events: EventHub
  /** The one audit entry of a streamed bulk creation, kept up to date chunk by chunk. */
  audit: AuditStore
}

export const deviceRoutes: FastifyPluginAsyncTypebox<DeviceRoutesOptions> = async (app, { auth, devices, dispatch, pool, events, audit }) => {
  const read = { preHandler: auth.require('read') }
  const write = { preHandler: auth.require('write') }
  const changes = { pool, hub: events }
  const deviceEvent = (rec: ChangeRecorder, id: string, type: string) => rec.event({ kind: 'device', type, deviceId: id, data: {} })

  app.post('/devices', { ...write, preValidation: labelsFirst, schema: { operationId: 'createDevice', tags: ['devices'], summary: 'Register a device; the secret is returned only here', body: NewDeviceBody, response: { 201: CreatedDevice, ...errors(400, 409) } } },
    async (req, reply) => {
      const created = await withChanges(changes, actorOf(req), async (client, rec) => {
        const d = await devices.create(req.body, { client, rec })
        rec.audit({ action: 'device.create', targetType: 'device', targetId: d.id, before: null, after: { id: d.id, name: req.body.name ?? null, labels: req.body.labels ?? {}, disabled: false } })
        deviceEvent(rec, d.id, 'created')
        return d
      })
      return reply.code(201).header('location', `/v1/devices/${encodeURIComponent(created.id)}`).send(created)
    })

  app.post('/devices/bulk', { ...write, preValidation: labelsFirst, bodyLimit: 64 * 1024 * 1024, schema: { operationId: 'createDevicesInBulk', tags: ['devices'], summary: 'Register many devices; streams NDJSON lines {id, secret} or {id, error}', body: BulkBody, response: { 200: BulkLines, ...errors(400) } } },
    async (req, reply) => {
      const body = req.body as Static<typeof BulkBody>
      const list = 'devices' in body
        ? body.devices
        : { count: body.count, make: (i: number) => ({ id: `${body.idPrefix}-${i + 1}`, labels: body.labels }) }
      // One audit entry for the request, with counts: inserted with the
      // first chunk and brought up to date in each chunk's transaction, so
      // it always counts exactly the devices that committed.
      const actor = actorOf(req)
      const counts = { created: 0, failed: 0 }
      let entryId: string | undefined
      await streamBulkCreation(req, reply, devices.createMany(list, undefined, (work) => withChanges(changes, actor, async (client, rec) => {
        const results = await work(client)
        const made = results.filter((r) => 'secret' in r)
        const next = { created: counts.created + made.length, failed: counts.failed + results.length - made.length }
        const id = entryId ?? await audit.insert(client, actor, { action: 'device.bulk_create', targetType: 'device', before: null, after: next })
        if (entryId !== undefined) await audit.setAfter(client, entryId, next)
        for (const r of made) deviceEvent(rec, r.id, 'created')
        rec.afterCommit(() => { Object.assign(counts, next); entryId = id })
        return results
      })))
    })

  app.get('/devices', { ...read, schema: { operationId: 'listDevices', tags: ['devices'], summary: 'List devices', querystring: DeviceListQuery, response: { 200: DevicePage, ...errors(400) } } },
    async (req) => {
      const q = req.query
      if (q.labels !== undefined && q.selector !== undefined) throw new ApiError(400, 'invalid_request', 'give the label selector as labels or as selector, not both')
      const selector = q.selector ?? q.labels
      const after = decodeCursor(q.cursor, [CURSOR.deviceId])?.[0]
      const items = await devices.list({
        labels: selector !== undefined ? parseLabelSelector(selector) : undefined,
        online: q.online,
        idPrefix: q.idPrefix,
        configState: q.configState,
        limit: q.limit,
        after
      })
      return { items: items.map(deviceJson), nextCursor: items.length === q.limit ? encodeCursor([items.at(-1)!.id]) : null }
    })

  app.post('/devices/bulk-actions', { ...write, schema: { operationId: 'runBulkDeviceAction', tags: ['devices'], summary: 'Disable, enable or delete many devices (by ids or a label selector); one audit entry with counts', body: BulkActionBody, response: { 200: BulkActionResult, ...errors(400) } } },
    async (req) => {
      const { action, ids, selector } = req.body
      if ((ids === undefined) === (selector === undefined)) throw new ApiError(400, 'invalid_request', 'give exactly one of ids and selector')
      let target: BulkTarget
      if (selector !== undefined) {
        const labels = parseLabelSelector(selector)
        // An empty selector matches every device: never what a bulk action means.
        if (Object.keys(labels).length === 0) throw new ApiError(400, 'invalid_request', 'selector must name at least one label')
        target = { labels }
      } else {
        target = { ids: ids! }
      }
      const result = await withChanges(changes, actorOf(req), async (client, rec) => {
        if ('labels' in target) {
          const n = await devices.countMatching(target, BULK_MAX, client)
          if (n > BULK_MAX) throw new ApiError(400, 'invalid_request', `selector ${JSON.stringify(selector)} matches more than ${BULK_MAX} devices; narrow it (or act in several steps)`)
        }
        const r = await devices.bulk(action as BulkAction, target, { client, rec })
        rec.audit({
          action: `device.bulk_${action}`,
          targetType: 'device',
          before: selector !== undefined ? { selector } : { ids: ids!.length <= 100 ? ids : undefined, idCount: ids!.length },
          after: { matched: r.matched, changed: r.changed.length }
        })
        const type = { disable: 'disabled', enable: 'enabled', delete: 'deleted' }[action]
        for (const id of r.changed) deviceEvent(rec, id, type)
        return r
      })
      // As the single forms: disconnected and their MQTT sessions removed
      // once the change is committed (credentials are already invalid).
      if (action !== 'enable') await eachLimited(result.changed, END_SESSION_CONCURRENCY, (id) => dispatch.endSession(id))
      req.log.info({ action, matched: result.matched, changed: result.changed.length }, 'bulk device action')
      return { action, matched: result.matched, changed: result.changed.length }
    })

  app.get('/devices/:id', { ...read, schema: { operationId: 'getDevice', tags: ['devices'], summary: 'A device with presence and config sync state', params: IdParams, response: { 200: Device, ...errors(404) } } },
    async (req) => deviceJson(found(await devices.get(req.params.id), `device ${req.params.id}`)))

  app.patch('/devices/:id', { ...write, preValidation: labelsFirst, schema: { operationId: 'updateDevice', tags: ['devices'], summary: 'Change name, labels or disabled', params: IdParams, body: PatchDeviceBody, response: { 200: Device, ...errors(400, 404) } } },
    async (req) => {
      const id = req.params.id
      const { disabled, ...fields } = req.body
      const d = await withChanges(changes, actorOf(req), async (client, rec) => {
        const before = found(await devices.lockSummary(id, client), `device ${id}`)
        const after = await devices.update(id, req.body, { client, rec })
        // One entry per kind of change: disabling is not an update (a PATCH
        // with both writes both).
        if (Object.keys(fields).length > 0) {
          rec.audit({ action: 'device.update', targetType: 'device', targetId: id, before, after: summaryOf(after) })
          deviceEvent(rec, id, 'updated')
        }
        if (disabled !== undefined) {
          rec.audit({ action: disabled ? 'device.disable' : 'device.enable', targetType: 'device', targetId: id, before: { disabled: before.disabled }, after: { disabled } })
          deviceEvent(rec, id, disabled ? 'disabled' : 'enabled')
        }
        return after
      })
      // A disabled device loses its connection at once (MQTT 5: DISCONNECT
      // 0x98), not at its next reconnect, and its MQTT session ends with it.
      if (disabled === true) await dispatch.endSession(id)
      return deviceJson(d)
    })

  app.delete('/devices/:id', { ...write, schema: { operationId: 'deleteDevice', tags: ['devices'], summary: 'Delete a device (an online device is disconnected first; its MQTT session is removed)', params: IdParams, response: { 204: Type.Null(), ...errors(404) } } },
    async (req, reply) => {
      // Removed first (and its credentials invalidated), then disconnected
      // and its MQTT session removed: a reconnect in between can no longer
      // authenticate, and a device created again with this id starts clean.
      const id = req.params.id
      await withChanges(changes, actorOf(req), async (client, rec) => {
        const before = found(await devices.lockSummary(id, client), `device ${id}`)
        await devices.remove(id, { client, rec })
        rec.audit({ action: 'device.delete', targetType: 'device', targetId: id, before, after: null })
        deviceEvent(rec, id, 'deleted')
      })
      await dispatch.endSession(id)
      return reply.code(204).send(null)
    })

  app.post('/devices/:id/secret', { ...write, schema: { operationId: 'rotateDeviceSecret', tags: ['devices'], summary: 'Rotate the secret; the old one stops working for new connections at once', params: IdParams, response: { 200: CreatedDevice, ...errors(404) } } },
    async (req) => {
      const id = req.params.id
      return await withChanges(changes, actorOf(req), async (client, rec) => {
        const rotated = await devices.rotateSecret(id, { client, rec })
        // Only that it happened: never the secret, nor its hash.
        rec.audit({ action: 'device.rotate_secret', targetType: 'device', targetId: id, before: null, after: { secretRotated: true } })
        deviceEvent(rec, id, 'secret_rotated')
        return rotated
      })
    })
}

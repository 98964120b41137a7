// /v1/audit: the audit trail (issue 13), admin scope only. Newest first,
// filtered by actor (token id), action, target and time range, paged with
// an opaque cursor. Entries are written by the routes that change things
// (devices/change-recorder.ts), in the change's transaction.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import { ApiError } from '../api-error.js'
import type { AuditRecord, AuditStore } from '../audit-store.js'
import type { OperatorAuth } from '../operator-auth.js'
import { CURSOR, decodeCursor, encodeCursor } from '../pagination.js'
import { Cursor, Limit, errors, iso, page } from '../schemas.js'

const Timestamp = Type.String({ maxLength: 64, description: 'ISO 8601, e.g. 2026-11-29T12:00:00Z' })

const AuditQuery = Type.Object({
  actor: Type.Optional(Type.String({ maxLength: 200, description: "token id ('admin' for ADMIN_TOKEN)" })),
  action: Type.Optional(Type.String({ maxLength: 100, description: 'e.g. device.update, command.cancel, token.revoke' })),
  targetType: Type.Optional(Type.String({ maxLength: 100, description: 'device, command, config, rollout, token' })),
  targetId: Type.Optional(Type.String({ maxLength: 200 })),
  from: Type.Optional(Timestamp),
  to: Type.Optional(Timestamp),
  limit: Limit,
  cursor: Type.Optional(Cursor)
}, { additionalProperties: false })

const AuditItem = Type.Object({
  id: Type.String(),
  at: Type.String({ format: 'date-time' }),
  actor: Type.Object({ id: Type.String(), name: Type.String() }),
  action: Type.String(),
  target: Type.Object({ type: Type.String(), id: Type.Union([Type.String(), Type.Null()]) }),
  requestId: Type.Union([Type.String(), Type.Null()]),
  before: Type.Unknown({ description: 'summary before the change (never secrets)' }),
  after: Type.Unknown({ description: 'summary after the change; counts for bulk actions' })
})

const AuditPage = {
  ...page(AuditItem),
  examples: [{
    items: [{
      id: '1042',
      at: '2026-11-29T10:00:00.000Z',
      actor: { id: 'tok_3f9a1c2b4d5e6f70', name: 'ci-deploy' },
      action: 'device.update',
      target: { type: 'device', id: 'sensor-1' },
      requestId: 'b5a3c1d2-7e8f-4a6b-9c0d-1e2f3a4b5c6d',
      before: { id: 'sensor-1', name: 'Boiler', labels: { site: 'berlin' }, disabled: false },
      after: { id: 'sensor-1', name: 'Boiler room', labels: { site: 'berlin' }, disabled: false }
    }],
    nextCursor: 'WyIxMDQyIl0'
  }]
}

const auditJson = (a: AuditRecord) => ({ ...a, at: iso(a.at) })

/** A time bound of the query, or 400 naming the parameter. */
function timeParam (name: string, value: string | undefined): Date | undefined {
  if (value === undefined) return undefined
  if (!CURSOR.timestamp(value)) throw new ApiError(400, 'invalid_request', `${name} must be an ISO 8601 timestamp with a time zone, e.g. 2026-11-29T12:00:00Z`)
  return new Date(value)
}

export interface AuditRoutesOptions { auth: OperatorAuth, audit: AuditStore }

export const auditRoutes: FastifyPluginAsyncTypebox<AuditRoutesOptions> = async (app, { auth, audit }) => {
  app.get('/audit', {
    preHandler: auth.require('admin'),
    schema: { operationId: 'listAudit', tags: ['audit'], summary: 'The audit trail: who changed what, newest first', querystring: AuditQuery, response: { 200: AuditPage, ...errors(400) } }
  }, async (req) => {
    const from = timeParam('from', req.query.from)
    const to = timeParam('to', req.query.to)
    if (from && to && from > to) throw new ApiError(400, 'invalid_range', '`from` is after `to`')
    const before = decodeCursor(req.query.cursor, [CURSOR.bigint])?.[0]
    const items = await audit.list({ ...req.query, from, to, before })
    return { items: items.map(auditJson), nextCursor: items.length === req.query.limit ? encodeCursor([items.at(-1)!.id]) : null }
  })
}

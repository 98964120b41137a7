// /v1/dead-letters (issue 13): the messages the broker received and refused
// (devices/dead-letter-store.ts), with their raw bytes and reason, newest
// first, and how many of each reason match the same filters — before this,
// dead letters could only be read with SQL.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import { ApiError } from '../api-error.js'
import type { DeadLetter, DeadLetterKey, DeadLetterStore } from '../dead-letter-store.js'
import type { OperatorAuth } from '../operator-auth.js'
import { CURSOR, decodeCursor, encodeCursor } from '../pagination.js'
import { Cursor, DeviceId, errors, iso } from '../schemas.js'

/**
 * A page holds at most 100: a dead letter keeps up to 64 KiB of payload
 * (87 KiB in base64), so the 1,000 of other lists could make a 90 MB page.
 */
export const MAX_DEAD_LETTER_LIMIT = 100

const QueryTime = (description: string) => Type.String({ format: 'date-time', pattern: '^(?!0000)', description })

const DeadLetterQuery = Type.Object({
  deviceId: Type.Optional(DeviceId),
  reason: Type.Optional(Type.String({ pattern: '^[a-z0-9_]{1,64}$', description: 'a stable reason code, e.g. `invalid_json` (README: Telemetry semantics)', examples: ['invalid_json'] })),
  from: Type.Optional(QueryTime('ISO 8601 with a time zone: received at or after')),
  to: Type.Optional(QueryTime('ISO 8601 with a time zone: received before')),
  limit: Type.Integer({ minimum: 1, maximum: MAX_DEAD_LETTER_LIMIT, default: MAX_DEAD_LETTER_LIMIT }),
  cursor: Type.Optional(Cursor)
}, { additionalProperties: false })

const DeadLetterItem = Type.Object({
  id: Type.String({ description: 'a 64-bit integer, as a string' }),
  deviceId: Type.Union([Type.String(), Type.Null()]),
  topic: Type.String(),
  reason: Type.String(),
  detail: Type.Union([Type.String(), Type.Null()]),
  receivedAt: Type.String({ format: 'date-time' }),
  payloadBase64: Type.String({ description: 'the bytes as received, base64 (the first 64 KiB of a `payload_too_large`)' })
})

const DeadLetterPage = Type.Object({
  items: Type.Array(DeadLetterItem),
  nextCursor: Type.Union([Type.String(), Type.Null()]),
  countsByReason: Type.Record(Type.String(), Type.Integer(), { description: 'dead letters matching the filters (all pages, not only this one), per reason' })
}, {
  examples: [{
    items: [{ id: '42', deviceId: 'sensor-1', topic: 'devices/sensor-1/telemetry', reason: 'invalid_json', detail: 'Unexpected token } in JSON at position 9', receivedAt: '2026-11-29T10:15:00.000Z', payloadBase64: 'eyJ0ZW1wIjogfQ==' }],
    nextCursor: null,
    countsByReason: { invalid_json: 1 }
  }]
})

const itemJson = (d: DeadLetter) => ({
  id: d.id, deviceId: d.deviceId, topic: d.topic, reason: d.reason, detail: d.detail, receivedAt: iso(d.receivedAt), payloadBase64: d.payload.toString('base64')
})

export interface DeadLetterRoutesOptions { auth: OperatorAuth, deadLetters: DeadLetterStore }

export const deadLetterRoutes: FastifyPluginAsyncTypebox<DeadLetterRoutesOptions> = async (app, { auth, deadLetters }) => {
  app.get('/dead-letters', {
    preHandler: auth.require('read'),
    schema: {
      operationId: 'listDeadLetters',
      tags: ['dead-letters'],
      summary: 'Dead letters, newest first, with counts per reason',
      description: 'Messages the broker received and refused (bad JSON, wrong shape, too large, …), kept with their raw bytes until TELEMETRY_RETENTION_DAYS. `countsByReason` counts every dead letter matching the filters, not only the page.',
      querystring: DeadLetterQuery,
      response: { 200: DeadLetterPage, ...errors(400) }
    }
  }, async (req) => {
    const { deviceId, reason, from, to, limit } = req.query
    if (from && to && Date.parse(from) > Date.parse(to)) throw new ApiError(400, 'invalid_range', '`from` is after `to`')
    const before = decodeCursor(req.query.cursor, [CURSOR.timestamp, CURSOR.bigint]) as DeadLetterKey | undefined
    const filter = { deviceId, reason, from, to }
    const [items, countsByReason] = await Promise.all([deadLetters.list({ ...filter, before, limit }), deadLetters.countsByReason(filter)])
    const last = items.at(-1)
    return { items: items.map(itemJson), nextCursor: last && items.length === limit ? encodeCursor(last.key) : null, countsByReason }
  })
}

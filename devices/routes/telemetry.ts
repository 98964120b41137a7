// /v1/devices/{id}/telemetry: a device's readings in time order, paged by
// an opaque cursor. Payloads go out exactly as PostgreSQL stores them
// (devices/telemetry-store.ts says why), so the page is written as text here.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import { ApiError } from '../api-error.js'
import type { DeviceStore } from '../device-store.js'
import { found } from '../domain-error.js'
import type { OperatorAuth } from '../operator-auth.js'
import { CURSOR, decodeCursor, encodeCursor } from '../pagination.js'
import { Cursor, IdParams, Limit, errors, page } from '../schemas.js'
import type { ReadingKey, StoredReading, TelemetryStore } from '../telemetry-store.js'

/** A time in a query (ISO 8601 with a zone); year 0000 passes the format but not PostgreSQL. */
const QueryTime = Type.String({ format: 'date-time', pattern: '^(?!0000)', description: 'ISO 8601 with a time zone, year 0001–9999' })

const Reading = Type.Object({
  ts: Type.String({ format: 'date-time' }),
  receivedAt: Type.String({ format: 'date-time' }),
  payload: Type.Unknown({ description: 'the reading exactly as PostgreSQL stores it (jsonb): numbers keep every digit, e.g. 9007199254740993 stays 9007199254740993 and 1e400 is written out in full — parse with a JSON library that keeps big numbers if that matters' })
})

const ReadingQuery = Type.Object({ from: Type.Optional(QueryTime), to: Type.Optional(QueryTime), limit: Limit, cursor: Type.Optional(Cursor) }, { additionalProperties: false })

/**
 * A page of readings as JSON text with each stored payload spliced in as it
 * is. fastify sends a string with a JSON content type unchanged, without the
 * response schema's serializer; the shape is still page(Reading).
 */
function pageJson (readings: StoredReading[], nextCursor: string | null): string {
  const items = readings.map((r) => `{"ts":"${r.ts.toISOString()}","receivedAt":"${r.receivedAt.toISOString()}","payload":${r.payloadJson}}`)
  return `{"items":[${items.join(',')}],"nextCursor":${JSON.stringify(nextCursor)}}`
}

export interface TelemetryRoutesOptions { auth: OperatorAuth, devices: DeviceStore, telemetry: TelemetryStore }

export const telemetryRoutes: FastifyPluginAsyncTypebox<TelemetryRoutesOptions> = async (app, { auth, devices, telemetry }) => {
  const read = { preHandler: auth.require('read') }

  app.get('/devices/:id/telemetry', { ...read, schema: { tags: ['telemetry'], summary: 'Readings in time order', params: IdParams, querystring: ReadingQuery, response: { 200: page(Reading), ...errors(400, 404) } } },
    async (req, reply) => {
      const { from, to, limit } = req.query
      if (from && to && Date.parse(from) > Date.parse(to)) throw new ApiError(400, 'invalid_range', '`from` is after `to`')
      // An unknown device is 404 even with a bad cursor: checked first.
      found(await devices.get(req.params.id), `device ${req.params.id}`)
      const after = decodeCursor(req.query.cursor, [CURSOR.timestamp, CURSOR.bigint]) as ReadingKey | undefined
      const readings = await telemetry.readings(req.params.id, { from, to, after, limit })
      const last = readings.at(-1)
      const nextCursor = last && readings.length === limit ? encodeCursor(last.key) : null
      return reply.type('application/json; charset=utf-8').send(pageJson(readings, nextCursor) as never)
    })
}

// /v1/devices/{id}/telemetry: a device's readings in time order, paged by
// an opaque cursor. Payloads go out exactly as PostgreSQL stores them
// (devices/telemetry-store.ts says why), so the page is written as text here.
// /v1/devices/{id}/telemetry/aggregate (issue 13): count, min, max and avg
// of one numeric field per time bucket, computed in PostgreSQL — what a
// chart of a device's last day needs, without fetching 86,400 readings.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import { ApiError } from '../api-error.js'
import type { DeviceStore } from '../device-store.js'
import { found } from '../domain-error.js'
import type { OperatorAuth } from '../operator-auth.js'
import { CURSOR, decodeCursor, encodeCursor } from '../pagination.js'
import { Cursor, IdParams, Limit, errors, literals } from '../schemas.js'
import { BUCKET_SECONDS, type AggregateBucket, type BucketName, type ReadingKey, type StoredReading, type TelemetryStore } from '../telemetry-store.js'

/** A time in a query (ISO 8601 with a zone); year 0000 passes the format but not PostgreSQL. */
const QueryTime = Type.String({ format: 'date-time', pattern: '^(?!0000)', description: 'ISO 8601 with a time zone, year 0001–9999' })

const Reading = Type.Object({
  ts: Type.String({ format: 'date-time' }),
  receivedAt: Type.String({ format: 'date-time' }),
  payload: Type.Unknown({ description: 'the reading exactly as PostgreSQL stores it (jsonb): numbers keep every digit, e.g. 9007199254740993 stays 9007199254740993 and 1e400 is written out in full — parse with a JSON library that keeps big numbers if that matters' })
})

const ReadingPage = Type.Object({ items: Type.Array(Reading), nextCursor: Type.Union([Type.String(), Type.Null()]) }, {
  examples: [{ items: [{ ts: '2026-11-29T10:15:00.000Z', receivedAt: '2026-11-29T10:15:00.120Z', payload: { temp: 21.5, env: { hum: 44 } } }], nextCursor: null }]
})

const ReadingQuery = Type.Object({ from: Type.Optional(QueryTime), to: Type.Optional(QueryTime), limit: Limit, cursor: Type.Optional(Cursor) }, { additionalProperties: false })

/**
 * A page of readings as JSON text with each stored payload spliced in as it
 * is. fastify sends a string with a JSON content type unchanged, without the
 * response schema's serializer; the shape is still ReadingPage.
 */
function pageJson (readings: StoredReading[], nextCursor: string | null): string {
  const items = readings.map((r) => `{"ts":"${r.ts.toISOString()}","receivedAt":"${r.receivedAt.toISOString()}","payload":${r.payloadJson}}`)
  return `{"items":[${items.join(',')}],"nextCursor":${JSON.stringify(nextCursor)}}`
}

/** A field of a reading: keys (or array indexes) joined by dots, at most 8 levels. */
export const FIELD_PATH = /^[A-Za-z0-9_-]{1,64}(\.[A-Za-z0-9_-]{1,64}){0,7}$/
/** The most buckets one aggregate answers: a day in 10 s buckets is 8,640. */
export const MAX_BUCKETS = 10_000
const DAY_MS = 86_400_000

const AggregateQuery = Type.Object({
  field: Type.String({ pattern: FIELD_PATH.source, maxLength: 520, description: 'the numeric field: a dot path into the reading (`temp`, `env.temp`, `sensors.0.value`); each level letters, digits, _ and -, at most 8 levels', examples: ['env.temp'] }),
  bucket: literals(Object.keys(BUCKET_SECONDS), { default: '1m', description: 'bucket width; buckets start on whole UTC minutes, hours and days' }),
  from: Type.Optional(Type.String({ format: 'date-time', pattern: '^(?!0000)', description: 'ISO 8601 with a time zone, inclusive; default: `to` minus 24 hours' })),
  to: Type.Optional(Type.String({ format: 'date-time', pattern: '^(?!0000)', description: 'ISO 8601 with a time zone, exclusive; default: now' }))
}, { additionalProperties: false })

const Aggregate = Type.Object({
  field: Type.String(),
  bucket: Type.String(),
  from: Type.String({ format: 'date-time' }),
  to: Type.String({ format: 'date-time' }),
  items: Type.Array(Type.Object({
    start: Type.String({ format: 'date-time', description: 'the bucket covers [start, start + bucket)' }),
    count: Type.Integer({ description: 'readings whose field is a JSON number (others are skipped)' }),
    min: Type.Number(),
    max: Type.Number(),
    avg: Type.Number({ description: 'exact decimal, up to 20 digits after the point' })
  }), { description: 'only buckets holding at least one number, in time order' })
}, {
  examples: [{ field: 'temp', bucket: '1m', from: '2026-11-28T12:00:00.000Z', to: '2026-11-29T12:00:00.000Z', items: [{ start: '2026-11-28T12:00:00.000Z', count: 60, min: 20.5, max: 22.25, avg: 21.3 }] }]
})

/**
 * The aggregate as JSON text: min, max and avg are PostgreSQL's exact
 * numeric text, written as JSON numbers without a trip through JavaScript
 * numbers (which would round them, or turn 1e400 into null). The shape is
 * still the response schema's.
 */
function aggregateJson (field: string, bucket: string, from: string, to: string, items: AggregateBucket[]): string {
  const rows = items.map((b) => `{"start":"${b.start.toISOString()}","count":${b.count},"min":${b.min},"max":${b.max},"avg":${b.avg}}`)
  return `{"field":${JSON.stringify(field)},"bucket":"${bucket}","from":"${from}","to":"${to}","items":[${rows.join(',')}]}`
}

export interface TelemetryRoutesOptions { auth: OperatorAuth, devices: DeviceStore, telemetry: TelemetryStore }

export const telemetryRoutes: FastifyPluginAsyncTypebox<TelemetryRoutesOptions> = async (app, { auth, devices, telemetry }) => {
  const read = { preHandler: auth.require('read') }

  app.get('/devices/:id/telemetry', { ...read, schema: { operationId: 'listTelemetry', tags: ['telemetry'], summary: 'Readings in time order', params: IdParams, querystring: ReadingQuery, response: { 200: ReadingPage, ...errors(400, 404) } } },
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

  app.get('/devices/:id/telemetry/aggregate', {
    ...read,
    schema: {
      operationId: 'aggregateTelemetry',
      tags: ['telemetry'],
      summary: 'count, min, max and avg of a numeric field per time bucket',
      description: `At most ${MAX_BUCKETS.toLocaleString('en')} buckets per request (a day in 10 s buckets is 8,640). Readings whose field is missing or not a JSON number are skipped.`,
      params: IdParams,
      querystring: AggregateQuery,
      response: { 200: Aggregate, ...errors(400, 404) }
    }
  }, async (req, reply) => {
    const { field } = req.query
    const bucket = req.query.bucket as BucketName
    // The range is always bounded (by default the last 24 hours): it is what
    // lets PostgreSQL skip the partitions outside it.
    const toMs = req.query.to !== undefined ? Date.parse(req.query.to) : Date.now()
    const fromMs = req.query.from !== undefined ? Date.parse(req.query.from) : toMs - DAY_MS
    if (fromMs >= toMs) throw new ApiError(400, 'invalid_range', '`from` must be before `to`' + (req.query.from !== undefined && req.query.to === undefined ? ' (default: now)' : ''))
    // Buckets the range touches (they are aligned to the epoch, as date_bin's origin is).
    const width = BUCKET_SECONDS[bucket] * 1000
    const buckets = Math.floor((toMs - 1) / width) - Math.floor(fromMs / width) + 1
    if (buckets > MAX_BUCKETS) {
      throw new ApiError(400, 'too_many_buckets', `the range holds ${buckets} buckets of ${bucket}; at most ${MAX_BUCKETS} are answered: use a wider bucket or a shorter range`)
    }
    found(await devices.get(req.params.id), `device ${req.params.id}`)
    // The caller's own strings go to PostgreSQL (microseconds kept); the
    // defaults are made here.
    const from = req.query.from ?? new Date(fromMs).toISOString()
    const to = req.query.to ?? new Date(toMs).toISOString()
    const items = await telemetry.aggregate(req.params.id, { path: field.split('.'), bucket, from, to })
    return reply.type('application/json; charset=utf-8').send(aggregateJson(field, bucket, new Date(fromMs).toISOString(), new Date(toMs).toISOString(), items) as never)
  })
}

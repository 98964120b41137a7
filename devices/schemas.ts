// Request and response schemas of the REST API (TypeBox): fastify validates
// requests with them and @fastify/swagger builds /openapi.json from them.
import { Type, type Static } from '@sinclair/typebox'
import { DEVICE_ID_PATTERN } from './device-id.js'
import { MAX_LIMIT } from './pagination.js'
import { LABEL_KEY_PATTERN, LABEL_VALUE_MAX_LENGTH, LABEL_VALUE_PATTERN } from './labels.js'

export const DeviceId = Type.String({ pattern: DEVICE_ID_PATTERN, description: 'One MQTT topic level: letters, digits, _ . : @ -; 1–128 characters' })
// Rules from devices/labels.ts. additionalProperties: false, because a
// Record's key pattern alone (patternProperties) lets any other key through.
export const Labels = Type.Record(Type.String({ pattern: LABEL_KEY_PATTERN }), Type.String({ maxLength: LABEL_VALUE_MAX_LENGTH, pattern: LABEL_VALUE_PATTERN }), { additionalProperties: false, description: 'string → string' })
export const Limit = Type.Integer({ minimum: 1, maximum: MAX_LIMIT, default: 100 })
export const Cursor = Type.String({ maxLength: 512, description: 'opaque, from nextCursor' })
/** A time in a query (ISO 8601 with a zone); year 0000 passes the format but not PostgreSQL. */
export const QueryTime = Type.String({ format: 'date-time', pattern: '^(?!0000)', description: 'ISO 8601 with a time zone, year 0001–9999' })
/**
 * Idempotency-Key: printable ASCII (the IETF draft makes it a structured
 * string), no leading or trailing space; anything else is 400, not a key
 * that retries may fail to match byte for byte.
 */
export const IdempotencyKey = Type.String({ minLength: 1, maxLength: 200, pattern: '^[!-~]([ -~]*[!-~])?$' })
export const Problem = Type.Object({
  type: Type.String(), title: Type.String(), status: Type.Integer(), code: Type.String(), detail: Type.String(), requestId: Type.Optional(Type.String())
}, { $id: 'Problem', description: 'application/problem+json' })

export const IdParams = Type.Object({ id: DeviceId })
export type IdParams = Static<typeof IdParams>

export const NewDeviceBody = Type.Object({
  id: Type.Optional(DeviceId),
  name: Type.Optional(Type.String({ maxLength: 200 })),
  labels: Type.Optional(Labels)
}, { additionalProperties: false })

export const CreatedDevice = Type.Object({ id: Type.String(), secret: Type.String({ description: 'shown only now' }) })

export const Device = Type.Object({
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

export const BulkBody = Type.Union([
  Type.Object({
    count: Type.Integer({ minimum: 1, maximum: 1_000_000 }),
    idPrefix: Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,100}$' }),
    labels: Type.Optional(Labels)
  }, { additionalProperties: false }),
  Type.Object({ devices: Type.Array(NewDeviceBody, { minItems: 1, maxItems: 100_000 }) }, { additionalProperties: false })
])

export const PatchDeviceBody = Type.Object({
  name: Type.Optional(Type.Union([Type.String({ maxLength: 200 }), Type.Null()])),
  labels: Type.Optional(Labels),
  disabled: Type.Optional(Type.Boolean())
}, { additionalProperties: false, minProperties: 1 })

export const JsonObject = Type.Record(Type.String(), Type.Unknown())

export const PutConfigBody = Type.Object({
  config: JsonObject,
  ifVersion: Type.Optional(Type.Integer({ minimum: 0, maximum: 2_147_483_647, description: 'apply only if the desired version is this (0: none yet); 409 otherwise' }))
}, { additionalProperties: false })

export const ConfigState = Type.Object({
  desired: Type.Union([Type.Object({ version: Type.Integer(), config: Type.Unknown(), updatedAt: Type.String({ format: 'date-time' }) }), Type.Null()]),
  reported: Type.Union([Type.Object({ version: Type.Integer(), config: Type.Unknown(), updatedAt: Type.String({ format: 'date-time' }) }), Type.Null()]),
  inSync: Type.Boolean()
})

export const NewCommandBody = Type.Object({
  name: Type.String({ minLength: 1, maxLength: 100 }),
  params: Type.Optional(JsonObject),
  ttlSeconds: Type.Integer({ minimum: 1, maximum: 2_592_000, default: 3600 })
}, { additionalProperties: false })

export const Command = Type.Object({
  id: Type.String({ format: 'uuid' }),
  deviceId: Type.String(),
  name: Type.String(),
  params: Type.Unknown(),
  status: Type.Union(['queued', 'sent', 'succeeded', 'failed', 'expired'].map((s) => Type.Literal(s))),
  createdAt: Type.String({ format: 'date-time' }),
  expiresAt: Type.String({ format: 'date-time' }),
  sentAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  completedAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  result: Type.Unknown(),
  correlationId: Type.Union([Type.String(), Type.Null()])
})

export const NewRolloutBody = Type.Object({
  selector: Type.String({ maxLength: 2000, description: 'label selector, e.g. site=berlin,tier=edge (empty: every device)' }),
  config: JsonObject,
  ratePerSecond: Type.Optional(Type.Integer({ minimum: 1, maximum: 1_000_000, description: 'devices per second; absent: as fast as possible' }))
}, { additionalProperties: false })

export const Rollout = Type.Object({
  id: Type.String({ format: 'uuid' }),
  selector: Type.Record(Type.String(), Type.String()),
  config: Type.Unknown(),
  ratePerSecond: Type.Union([Type.Integer(), Type.Null()]),
  status: Type.Union(['running', 'paused', 'cancelled', 'completed'].map((s) => Type.Literal(s))),
  createdAt: Type.String({ format: 'date-time' }),
  updatedAt: Type.String({ format: 'date-time' }),
  counts: Type.Object({ targeted: Type.Integer(), pushed: Type.Integer(), inSync: Type.Integer(), pending: Type.Integer() })
})

export const Reading = Type.Object({
  ts: Type.String({ format: 'date-time' }),
  receivedAt: Type.String({ format: 'date-time' }),
  payload: Type.Unknown({ description: 'the reading exactly as PostgreSQL stores it (jsonb): numbers keep every digit, e.g. 9007199254740993 stays 9007199254740993 and 1e400 is written out in full — parse with a JSON library that keeps big numbers if that matters' })
})

export const NewTokenBody = Type.Object({
  name: Type.String({ minLength: 1, maxLength: 100 }),
  scopes: Type.Array(Type.Union([Type.Literal('read'), Type.Literal('write'), Type.Literal('admin')]), { minItems: 1, uniqueItems: true })
}, { additionalProperties: false })

export const Token = Type.Object({
  id: Type.String(),
  name: Type.String(),
  scopes: Type.Array(Type.String()),
  createdAt: Type.String({ format: 'date-time' }),
  revokedAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  lastUsedAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()])
})

export const page = <T extends import('@sinclair/typebox').TSchema>(item: T) =>
  Type.Object({ items: Type.Array(item), nextCursor: Type.Union([Type.String(), Type.Null()]) })

/** Error responses every authenticated route can give. */
export const errors = (...codes: number[]) => Object.fromEntries([401, 403, 429, ...codes].map((c) => [c, Type.Ref(Problem)]))

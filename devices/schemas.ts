// The schemas (TypeBox) that several resources of the REST API share. Each
// resource's own request and response schemas live in its route file
// (devices/routes/<resource>.ts). fastify validates requests with them and
// @fastify/swagger builds /openapi.json from them; Problem, the only one
// registered by `$id` (broker/http-server.ts adds it), is referenced from
// every route and appears once under components/schemas.
import { Type, type Static, type TSchema, type TSchemaOptions } from 'typebox'
import { DEVICE_ID_PATTERN } from './device-id.js'
import { MAX_LIMIT } from './pagination.js'

export const DeviceId = Type.String({ pattern: DEVICE_ID_PATTERN, description: 'One MQTT topic level: letters, digits, _ . : @ -; 1–128 characters' })
export const Limit = Type.Integer({ minimum: 1, maximum: MAX_LIMIT, default: 100 })
export const Cursor = Type.String({ maxLength: 512, description: 'opaque, from nextCursor' })
export const JsonObject = Type.Record(Type.String(), Type.Unknown())

export const Problem = Type.Object({
  type: Type.String(), title: Type.String(), status: Type.Integer(), code: Type.String(), detail: Type.String(), requestId: Type.Optional(Type.String())
}, { $id: 'Problem', description: 'application/problem+json' })

/** Path parameters of /devices/{id}/…: a device id. */
export const IdParams = Type.Object({ id: DeviceId })
export type IdParams = Static<typeof IdParams>
/**
 * Path parameters of commands, rollouts and tokens. Their ids are not
 * checked here: an id of the wrong shape is simply not found (404), the
 * store never casts it (devices/uuid.ts).
 */
export const OpaqueIdParams = Type.Object({ id: Type.String({ maxLength: 64 }) })

/**
 * One of a list of strings: an `anyOf` of `const`s, as /openapi.json and the
 * configuration errors (broker/config.ts allowedValues) read it, typed as the
 * union of the strings. TypeBox 1.x types a Union from a tuple only, and
 * `Type.Union(values.map(Type.Literal))` is an array: its type would be never.
 */
export const literals = <const T extends readonly string[]>(values: T, options?: TSchemaOptions) =>
  Type.Unsafe<T[number]>(Type.Union(values.map((v) => Type.Literal(v)), options))

export const page = <T extends TSchema>(item: T) =>
  Type.Object({ items: Type.Array(item), nextCursor: Type.Union([Type.String(), Type.Null()]) })

/** Error responses every authenticated route can give. */
export const errors = (...codes: number[]) => Object.fromEntries([401, 403, 429, ...codes].map((c) => [c, Type.Ref('Problem')]))

/** A Date as the `date-time` strings of the response schemas. */
export function iso (d: Date): string
export function iso (d: Date | null): string | null
export function iso (d: Date | null): string | null {
  return d === null ? null : d.toISOString()
}

/**
 * A request field that may be null: `nullable` rather than a union with
 * null. fastify's ajv coerces types, and in a union it turns null into 0 in
 * a number branch (0 is a threshold: pause at the first failure) or "" in a
 * string branch; for a nullable type it coerces only what matches neither.
 */
export const nullable = <T extends TSchema>(schema: T) => Type.Unsafe<Static<T> | null>({ ...schema, nullable: true })

// What /openapi.json says beyond the routes' own schemas (issue 13, "API
// quality"): where the API is (servers), its license, its tags, and how its
// errors look on the wire. @fastify/swagger builds the document from the
// TypeBox schemas of the routes (broker/http-server.ts); finishOpenApiDocument
// is its transformObject, run once when the document is first built.
// The document is linted with Redocly's `recommended` rules inside npm test
// (redocly.yaml, test/devices/openapi-lint.test.ts).
import { STATUS_CODES } from 'node:http'
import { PROBLEM_CODES } from './problem-codes.js'

export const OPENAPI_INFO = {
  title: 'fleetgate control plane',
  version: '1',
  description: 'Devices, their config, commands, rollouts, telemetry, dead letters, events and the audit trail of a fleetgate broker. ' +
    'Every route needs `Authorization: Bearer <token>`; errors are `application/problem+json` with a stable `code`.',
  // package.json is "private" with no license field and the repository has no
  // LICENSE file: the code is not licensed to anyone (npm's UNLICENSED).
  license: { name: 'UNLICENSED (proprietary)' }
}

/** Relative: the API is served by the same server as this document, whatever its address (behind a proxy too). */
export const OPENAPI_SERVERS = [{ url: '/', description: 'the server this document was fetched from' }]

export const OPENAPI_TAGS = [
  { name: 'devices', description: 'Device registry: credentials, labels, presence, bulk actions' },
  { name: 'config', description: 'Desired and reported config, its history and rollback' },
  { name: 'commands', description: 'Commands to one device and their results' },
  { name: 'rollouts', description: 'A config or command for every device matching a label selector, at a bounded rate' },
  { name: 'telemetry', description: 'Stored readings and their aggregates' },
  { name: 'dead-letters', description: 'Messages the broker received and refused, with their bytes and reason' },
  { name: 'events', description: 'The live event stream of the fleet (Server-Sent Events)' },
  { name: 'audit', description: 'Who changed what through this API' },
  { name: 'overview', description: 'The fleet at a glance' },
  { name: 'tokens', description: 'API tokens and their scopes' }
]

interface Media { schema?: { $ref?: string } }
interface Response { description?: string, content?: Record<string, Media>, headers?: Record<string, unknown> }
interface Document {
  paths?: Record<string, Record<string, { responses?: Record<string, Response> }>>
  components?: { schemas?: Record<string, { properties?: Record<string, Record<string, unknown>> }> }
}

const PROBLEM_REF = '#/components/schemas/Problem'
const isOperation = (method: string) => ['get', 'put', 'post', 'delete', 'patch', 'head', 'options', 'trace'].includes(method)

/**
 * Errors are sent as application/problem+json (devices/problem-details.ts),
 * but @fastify/swagger documents every response schema as application/json:
 * each response whose schema is the Problem gets the media type it really
 * has, and a description naming its status. Every operation can answer 500
 * internal_error. Problem.code lists the stable codes. A 201 or 202 names
 * what it created in Location (the API contract; each route sets it).
 */
export function finishOpenApiDocument<T> (document: T): T {
  const doc = document as Document
  for (const pathItem of Object.values(doc.paths ?? {})) {
    for (const [method, operation] of Object.entries(pathItem)) {
      if (!isOperation(method)) continue
      const responses = operation.responses ??= {}
      responses['500'] ??= { content: { 'application/json': { schema: { $ref: PROBLEM_REF } } } }
      for (const [status, response] of Object.entries(responses)) {
        if (status === '201' || status === '202') {
          response.headers = { Location: { description: 'the path of what was created (or accepted)', schema: { type: 'string' } }, ...response.headers }
        }
        const media = response.content?.['application/json']
        if (media?.schema?.$ref !== PROBLEM_REF) continue
        response.content = { 'application/problem+json': media }
        response.description = `${STATUS_CODES[Number(status)] ?? 'Error'}: a problem+json with a stable \`code\``
      }
    }
  }
  const code = doc.components?.schemas?.Problem?.properties?.code
  if (code) {
    code.enum = [...PROBLEM_CODES]
    code.description = 'stable, documented in the README (REST API, Errors); match on it, not on title or detail'
  }
  return document
}

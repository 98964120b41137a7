// Commands (issue 3): sent to one device, followed until they finish.
// POST /v1/devices/{id}/commands honours an Idempotency-Key; GET
// /v1/commands/{id}?waitSeconds=N holds the request until the command
// finishes (devices/command-waiters.ts).
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import { FINAL, toMessage, type Command as CommandT, type CommandStore } from '../command-store.js'
import { createCommandWaiters } from '../command-waiters.js'
import type { DeviceStore } from '../device-store.js'
import type { ChangeFeed, DeviceDispatch } from '../dispatch.js'
import { found } from '../domain-error.js'
import type { OperatorAuth } from '../operator-auth.js'
import { CURSOR, decodeCursor, encodeCursor } from '../pagination.js'
import { Cursor, IdParams, JsonObject, Limit, OpaqueIdParams, errors, iso, page } from '../schemas.js'
import { topics } from '../topics.js'

/**
 * Idempotency-Key: printable ASCII (the IETF draft makes it a structured
 * string), no leading or trailing space; anything else is 400, not a key
 * that retries may fail to match byte for byte.
 */
const IdempotencyKey = Type.String({ minLength: 1, maxLength: 200, pattern: '^[!-~]([ -~]*[!-~])?$' })

const NewCommandBody = Type.Object({
  name: Type.String({ minLength: 1, maxLength: 100 }),
  params: Type.Optional(JsonObject),
  ttlSeconds: Type.Integer({ minimum: 1, maximum: 2_592_000, default: 3600 })
}, { additionalProperties: false })

const Command = Type.Object({
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

const CommandListQuery = Type.Object({ limit: Limit, cursor: Type.Optional(Cursor) }, { additionalProperties: false })

const commandJson = (c: CommandT) => ({ ...c, createdAt: iso(c.createdAt), expiresAt: iso(c.expiresAt), sentAt: iso(c.sentAt), completedAt: iso(c.completedAt) })

export interface CommandRoutesOptions {
  auth: OperatorAuth
  devices: DeviceStore
  commands: CommandStore
  dispatch: DeviceDispatch
  changes: ChangeFeed
  /** Longest `waitSeconds` on GET /v1/commands/{id}. */
  maxWaitSeconds: number
  onCommandStatus? (status: string): void
}

export const commandRoutes: FastifyPluginAsyncTypebox<CommandRoutesOptions> = async (app, opts) => {
  const { auth, devices, commands, dispatch } = opts
  const read = { preHandler: auth.require('read') }
  const write = { preHandler: auth.require('write') }
  const waiters = createCommandWaiters(opts.changes)
  const WaitQuery = Type.Object({ waitSeconds: Type.Optional(Type.Integer({ minimum: 0, maximum: opts.maxWaitSeconds })) }, { additionalProperties: false })

  app.post('/devices/:id/commands', { ...write, schema: { tags: ['commands'], summary: 'Send a command (Idempotency-Key honoured for a day)', params: IdParams, headers: Type.Object({ 'idempotency-key': Type.Optional(IdempotencyKey) }), body: NewCommandBody, response: { 202: Command, 200: Command, ...errors(400, 404, 422) } } },
    async (req, reply) => {
      const { command, created } = await commands.create(req.params.id, {
        name: req.body.name,
        params: req.body.params,
        ttlSeconds: req.body.ttlSeconds,
        idempotencyKey: req.headers['idempotency-key'],
        correlationId: req.id
      })
      let result = command
      if (created) {
        opts.onCommandStatus?.('queued')
        if (await dispatch.deliver(command.deviceId, topics.command(command.deviceId, command.id), toMessage(command))) {
          await commands.markSent([command.id])
          opts.onCommandStatus?.('sent')
          result = (await commands.get(command.id)) ?? command
        }
        req.log.info({ commandId: command.id, deviceId: command.deviceId, correlationId: req.id }, 'command created')
      }
      // 200: a retry with the same key, answered with the command it made.
      return reply.code(created ? 202 : 200).send(commandJson(result))
    })

  app.get('/commands/:id', { ...read, schema: { tags: ['commands'], summary: 'A command; waitSeconds holds the request until it finishes', params: OpaqueIdParams, querystring: WaitQuery, response: { 200: Command, ...errors(400, 404) } } },
    async (req) => {
      const id = req.params.id
      let cmd = found(await commands.get(id), `command ${id}`)
      const wait = req.query.waitSeconds ?? 0
      if (wait > 0 && !FINAL.has(cmd.status)) {
        await waiters.wait(id, wait * 1000, {
          gone: req.raw,
          finished: async () => { const c = await commands.get(id); return c !== undefined && FINAL.has(c.status) }
        })
        // Gone only if its device was deleted meanwhile: 404, as after.
        cmd = found(await commands.get(id), `command ${id}`)
      }
      return commandJson(cmd)
    })

  app.get('/devices/:id/commands', { ...read, schema: { tags: ['commands'], summary: "A device's commands, oldest first", params: IdParams, querystring: CommandListQuery, response: { 200: page(Command), ...errors(400, 404) } } },
    async (req) => {
      // An unknown device is 404 even with a bad cursor: checked first.
      found(await devices.get(req.params.id), `device ${req.params.id}`)
      const after = decodeCursor(req.query.cursor, [CURSOR.timestamp, CURSOR.uuid]) as [string, string] | undefined
      const items = await commands.list(req.params.id, req.query.limit, after)
      const last = items.at(-1)
      return { items: items.map(commandJson), nextCursor: last && items.length === req.query.limit ? encodeCursor([last.createdAt.toISOString(), last.id]) : null }
    })
}

// Commands (issue 3): sent to one device, followed until they finish.
// POST /v1/devices/{id}/commands honours an Idempotency-Key; GET
// /v1/commands/{id}?waitSeconds=N holds the request until the command
// finishes (devices/command-waiters.ts); POST /v1/commands/{id}/cancel
// (issue 13) stops a queued or sent one. Creating and cancelling are
// audited and emit `command` events in their transaction.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import type pg from 'pg'
import { withChanges } from '../change-recorder.js'
import { COMMAND_STATUSES, commandEvent, toMessage, type Command as CommandT, type CommandStore } from '../command-store.js'
import type { EventHub } from '../fleet-events.js'
import { createCommandWaiters } from '../command-waiters.js'
import type { DeviceStore } from '../device-store.js'
import type { ChangeFeed, DeviceDispatch } from '../dispatch.js'
import { found } from '../domain-error.js'
import { actorOf, type OperatorAuth } from '../operator-auth.js'
import { CURSOR, decodeCursor, encodeCursor } from '../pagination.js'
import { Cursor, IdParams, JsonObject, Limit, OpaqueIdParams, errors, iso, literals, page } from '../schemas.js'
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

const COMMAND_EXAMPLE = {
  id: '0b6f1a52-4c1e-4a8e-9a57-2f1d6c3e9b10',
  deviceId: 'sensor-1',
  name: 'reboot',
  params: { delaySeconds: 5 },
  status: 'succeeded',
  createdAt: '2026-11-29T10:00:00.000Z',
  expiresAt: '2026-11-29T11:00:00.000Z',
  sentAt: '2026-11-29T10:00:00.050Z',
  completedAt: '2026-11-29T10:00:01.200Z',
  result: { uptimeSeconds: 0 },
  correlationId: 'b5a3c1d2-7e8f-4a6b-9c0d-1e2f3a4b5c6d'
}

const Command = Type.Object({
  id: Type.String({ format: 'uuid' }),
  deviceId: Type.String(),
  name: Type.String(),
  params: Type.Unknown(),
  status: literals(COMMAND_STATUSES),
  createdAt: Type.String({ format: 'date-time' }),
  expiresAt: Type.String({ format: 'date-time' }),
  sentAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  completedAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  result: Type.Unknown(),
  correlationId: Type.Union([Type.String(), Type.Null()])
}, { examples: [COMMAND_EXAMPLE] })

const CommandPage = { ...page(Command), examples: [{ items: [COMMAND_EXAMPLE], nextCursor: null }] }

const CommandListQuery = Type.Object({
  status: Type.Optional(literals(COMMAND_STATUSES)),
  limit: Limit,
  cursor: Type.Optional(Cursor)
}, { additionalProperties: false })

const commandJson = (c: CommandT) => ({ ...c, createdAt: iso(c.createdAt), expiresAt: iso(c.expiresAt), sentAt: iso(c.sentAt), completedAt: iso(c.completedAt) })

export interface CommandRoutesOptions {
  auth: OperatorAuth
  devices: DeviceStore
  commands: CommandStore
  dispatch: DeviceDispatch
  changes: ChangeFeed
  /** For the change transactions and their events (devices/change-recorder.ts). */
  pool: pg.Pool
  events: EventHub
  /** Longest `waitSeconds` on GET /v1/commands/{id}. */
  maxWaitSeconds: number
  onCommandStatus? (status: string): void
}

export const commandRoutes: FastifyPluginAsyncTypebox<CommandRoutesOptions> = async (app, opts) => {
  const { auth, devices, commands, dispatch } = opts
  const read = { preHandler: auth.require('read') }
  const write = { preHandler: auth.require('write') }
  // Woken at once by results recorded here, by NOTIFY for the rest.
  const waiters = createCommandWaiters(opts.changes, commands)
  const changes = { pool: opts.pool, hub: opts.events }
  const WaitQuery = Type.Object({ waitSeconds: Type.Optional(Type.Integer({ minimum: 0, maximum: opts.maxWaitSeconds })) }, { additionalProperties: false })

  app.post('/devices/:id/commands', { ...write, schema: { operationId: 'sendCommand', tags: ['commands'], summary: 'Send a command (Idempotency-Key honoured for a day)', params: IdParams, headers: Type.Object({ 'idempotency-key': Type.Optional(IdempotencyKey) }), body: NewCommandBody, response: { 202: Command, 200: Command, ...errors(400, 404, 422) } } },
    async (req, reply) => {
      const { command, created } = await withChanges(changes, actorOf(req), async (client, rec) => {
        const r = await commands.create(req.params.id, {
          name: req.body.name,
          params: req.body.params,
          ttlSeconds: req.body.ttlSeconds,
          idempotencyKey: req.headers['idempotency-key'],
          correlationId: req.id
        }, client)
        // A retry answered with the command it made changed nothing: no entry.
        if (r.created) {
          const c = r.command
          rec.audit({ action: 'command.create', targetType: 'command', targetId: c.id, before: null, after: { deviceId: c.deviceId, name: c.name, status: c.status, expiresAt: c.expiresAt.toISOString() } })
          rec.event(commandEvent(c, 'queued'))
        }
        return r
      })
      let result = command
      if (created) {
        opts.onCommandStatus?.('queued')
        if (await dispatch.deliver(command.deviceId, topics.command(command.deviceId, command.id), toMessage(command))) {
          const [sent] = await commands.markSent([command.id])
          opts.onCommandStatus?.('sent')
          // Not marked: the device answered first (or it expired); read what it is now.
          result = sent ?? (await commands.get(command.id)) ?? command
        }
        req.log.info({ commandId: command.id, deviceId: command.deviceId, correlationId: req.id }, 'command created')
      }
      // 200: a retry with the same key, answered with the command it made.
      if (created) void reply.header('location', `/v1/commands/${result.id}`)
      return reply.code(created ? 202 : 200).send(commandJson(result))
    })

  app.post('/commands/:id/cancel', { ...write, schema: { operationId: 'cancelCommand', tags: ['commands'], summary: 'Cancel a queued or sent command (a result the device sends later is ignored)', params: OpaqueIdParams, response: { 200: Command, ...errors(404, 409) } } },
    async (req) => {
      const cmd = await withChanges(changes, actorOf(req), async (client, rec) => {
        const { before, command } = await commands.cancel(req.params.id, client)
        rec.audit({ action: 'command.cancel', targetType: 'command', targetId: command.id, before: { status: before }, after: { status: command.status } })
        rec.event(commandEvent(command, 'cancelled'))
        return command
      })
      opts.onCommandStatus?.('cancelled')
      // Committed: this replica's waiters answer now (others by NOTIFY).
      waiters.finished(cmd)
      req.log.info({ commandId: cmd.id, deviceId: cmd.deviceId }, 'command cancelled')
      return commandJson(cmd)
    })

  app.get('/commands/:id', { ...read, schema: { operationId: 'getCommand', tags: ['commands'], summary: 'A command; waitSeconds holds the request until it finishes', params: OpaqueIdParams, querystring: WaitQuery, response: { 200: Command, ...errors(400, 404) } } },
    async (req) => {
      const id = req.params.id
      const wait = req.query.waitSeconds ?? 0
      // Waiting: registered before the one read (no second read to close the
      // race), answered with the final row when this replica recorded it.
      // Gone only if its device was deleted meanwhile: 404, as before.
      const cmd = wait > 0
        ? await waiters.wait(id, wait * 1000, { gone: req.raw, read: () => commands.get(id) })
        : await commands.get(id)
      return commandJson(found(cmd, `command ${id}`))
    })

  app.get('/devices/:id/commands', { ...read, schema: { operationId: 'listDeviceCommands', tags: ['commands'], summary: "A device's commands, oldest first", params: IdParams, querystring: CommandListQuery, response: { 200: CommandPage, ...errors(400, 404) } } },
    async (req) => {
      // An unknown device is 404 even with a bad cursor: checked first.
      found(await devices.get(req.params.id), `device ${req.params.id}`)
      const after = decodeCursor(req.query.cursor, [CURSOR.timestamp, CURSOR.uuid]) as [string, string] | undefined
      const items = await commands.list(req.params.id, req.query.limit, after, req.query.status)
      const last = items.at(-1)
      return { items: items.map(commandJson), nextCursor: last && items.length === req.query.limit ? encodeCursor([last.createdAt.toISOString(), last.id]) : null }
    })
}

// The REST control plane (issue 3), as one fastify plugin under /v1. Its
// dependencies are created by the broker's composition root and passed in;
// it reaches devices only through DeviceDispatch.
import type { FastifyInstance, FastifyRequest } from 'fastify'
import fastifyRateLimit from '@fastify/rate-limit'
import { Type, type Static } from '@sinclair/typebox'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type pg from 'pg'
import { ApiError, notFound } from './api-error.js'
import type { ChangeFeed, DeviceDispatch } from './dispatch.js'
import { CHANNELS } from './dispatch.js'
import type { DeviceStore, DeviceView } from './device-store.js'
import type { ConfigStore } from './config-store.js'
import { FINAL, toMessage, type Command, type CommandStore } from './command-store.js'
import type { RolloutRunner, Rollout as RolloutT } from './rollout-runner.js'
import type { TokenStore, TokenInfo } from './token-store.js'
import type { OperatorAuth } from './operator-auth.js'
import { parseLabelSelector } from './label-selector.js'
import { labelsError } from './labels.js'
import { CURSOR, decodeCursor, encodeCursor } from './pagination.js'
import * as S from './schemas.js'

export interface ControlPlaneDeps {
  pool: pg.Pool
  devices: DeviceStore
  configs: ConfigStore
  commands: CommandStore
  rollouts: RolloutRunner
  tokens: TokenStore
  auth: OperatorAuth
  dispatch: DeviceDispatch
  changes: ChangeFeed
  rateLimitPerMinute: number
  /** Longest `waitSeconds` on GET /v1/commands/{id}. */
  maxWaitSeconds: number
  onCommandStatus? (status: string): void
}

const iso = (d: Date | null) => d === null ? null : d.toISOString()
const deviceJson = (d: DeviceView) => ({ ...d, createdAt: iso(d.createdAt)!, updatedAt: iso(d.updatedAt)!, connectedAt: iso(d.connectedAt), lastSeenAt: iso(d.lastSeenAt) })
const commandJson = (c: Command) => ({ ...c, createdAt: iso(c.createdAt)!, expiresAt: iso(c.expiresAt)!, sentAt: iso(c.sentAt), completedAt: iso(c.completedAt) })
const rolloutJson = (r: RolloutT) => ({ ...r, createdAt: iso(r.createdAt)!, updatedAt: iso(r.updatedAt)! })
const tokenJson = (t: TokenInfo) => ({ ...t, createdAt: iso(t.createdAt)!, revokedAt: iso(t.revokedAt), lastUsedAt: iso(t.lastUsedAt) })

/**
 * Labels in a device body (top level, or each of `devices` in a bulk body),
 * checked before schema validation so that the API refuses a label with the
 * message of devices/labels.ts, the same the CLI and selectors give. The
 * schema (S.Labels) still checks everything else and documents the rules.
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

export async function controlPlane (root: FastifyInstance, deps: ControlPlaneDeps): Promise<void> {
  const { devices, configs, commands, rollouts, tokens, auth, dispatch } = deps

  // Waiters of GET /v1/commands/{id}?waitSeconds=N, woken by the NOTIFY that
  // every final transition sends (from any replica): no polling loop.
  const waiters = new Map<string, Set<() => void>>()
  deps.changes.on(CHANNELS.commandDone, (id) => { for (const wake of waiters.get(id) ?? []) wake() })

  await root.register(async (app0) => {
    const app = app0.withTypeProvider<TypeBoxTypeProvider>()
    app.addHook('onRequest', auth.authenticate)
    await app.register(fastifyRateLimit, {
      max: deps.rateLimitPerMinute,
      timeWindow: 60_000,
      hook: 'preHandler',
      keyGenerator: (req) => req.operator?.tokenId ?? req.ip,
      errorResponseBuilder: (_req, ctx) => new ApiError(429, 'rate_limited', `rate limit of ${ctx.max} requests per minute exceeded; retry in ${Math.ceil(ctx.ttl / 1000)} s`, { 'retry-after': String(Math.ceil(ctx.ttl / 1000)) })
    })
    const read = { preHandler: auth.require('read') }
    const write = { preHandler: auth.require('write') }
    const admin = { preHandler: auth.require('admin') }

    // ---- devices ----
    app.post('/devices', { ...write, preValidation: labelsFirst, schema: { tags: ['devices'], summary: 'Register a device; the secret is returned only here', body: S.NewDeviceBody, response: { 201: S.CreatedDevice, ...S.errors(400, 409) } } },
      async (req, reply) => reply.code(201).send(await devices.create(req.body)))

    app.post('/devices/bulk', { ...write, preValidation: labelsFirst, bodyLimit: 64 * 1024 * 1024, schema: { tags: ['devices'], summary: 'Register many devices; streams NDJSON lines {id, secret} or {id, error}', body: S.BulkBody, response: { ...S.errors(400) } } },
      async (req, reply) => {
        const body = req.body as Static<typeof S.BulkBody>
        const list = 'devices' in body
          ? body.devices
          : { count: body.count, make: (i: number) => ({ id: `${body.idPrefix}-${i + 1}`, labels: body.labels }) }
        // The response is streamed by hand: each chunk's credentials as soon
        // as it commits, waiting for the client to read (and stopping if it
        // goes away, so an abandoned request does not go on creating devices).
        reply.hijack()
        const res = reply.raw
        res.writeHead(200, { 'content-type': 'application/x-ndjson', 'x-request-id': req.id })
        try {
          for await (const chunk of devices.createMany(list)) {
            if (res.destroyed) break
            if (!res.write(chunk.map((r) => JSON.stringify(r)).join('\n') + '\n')) {
              // Whichever comes first; the other listener is removed (one
              // per chunk would pile up on a long, slowly read response).
              await new Promise<void>((resolve) => {
                const done = () => { res.off('drain', done); res.off('close', done); resolve() }
                res.once('drain', done); res.once('close', done)
              })
            }
          }
        } catch (err) {
          req.log.error({ err }, 'bulk creation failed part-way')
          res.write(JSON.stringify({ error: 'internal_error', detail: 'creation stopped; the lines above were created', requestId: req.id }) + '\n')
        }
        res.end()
      })

    app.get('/devices', { ...read, schema: { tags: ['devices'], summary: 'List devices', querystring: Type.Object({ labels: Type.Optional(Type.String({ maxLength: 2000, description: 'label selector: site=berlin,tier=edge (each key once)' })), online: Type.Optional(Type.Boolean()), limit: S.Limit, cursor: Type.Optional(S.Cursor) }, { additionalProperties: false }), response: { 200: S.page(S.Device), ...S.errors(400) } } },
      async (req) => {
        const after = decodeCursor(req.query.cursor, [CURSOR.deviceId])?.[0]
        const items = await devices.list({ labels: req.query.labels !== undefined ? parseLabelSelector(req.query.labels) : undefined, online: req.query.online, limit: req.query.limit, after })
        return { items: items.map(deviceJson), nextCursor: items.length === req.query.limit ? encodeCursor([items.at(-1)!.id]) : null }
      })

    app.get('/devices/:id', { ...read, schema: { tags: ['devices'], summary: 'A device with presence and config sync state', params: S.IdParams, response: { 200: S.Device, ...S.errors(404) } } },
      async (req) => deviceJson(await devices.get(req.params.id) ?? (() => { throw notFound(`device ${req.params.id}`) })()))

    app.patch('/devices/:id', { ...write, preValidation: labelsFirst, schema: { tags: ['devices'], summary: 'Change name, labels or disabled', params: S.IdParams, body: S.PatchDeviceBody, response: { 200: S.Device, ...S.errors(400, 404) } } },
      async (req) => {
        const d = await devices.update(req.params.id, req.body)
        if (!d) throw notFound(`device ${req.params.id}`)
        // A disabled device loses its connection at once, not at its next reconnect.
        if (req.body.disabled === true) await dispatch.disconnect(req.params.id)
        return deviceJson(d)
      })

    app.delete('/devices/:id', { ...write, schema: { tags: ['devices'], summary: 'Delete a device (an online device is disconnected first; its MQTT session is removed)', params: S.IdParams, response: { 204: Type.Null(), ...S.errors(404) } } },
      async (req, reply) => {
        // Removed first (and its credentials invalidated), then disconnected
        // and its MQTT session removed: a reconnect in between can no longer
        // authenticate, and a device created again with this id starts clean.
        if (!await devices.remove(req.params.id)) throw notFound(`device ${req.params.id}`)
        await dispatch.endSession(req.params.id)
        return reply.code(204).send(null)
      })

    app.post('/devices/:id/secret', { ...write, schema: { tags: ['devices'], summary: 'Rotate the secret; the old one stops working for new connections at once', params: S.IdParams, response: { 200: S.CreatedDevice, ...S.errors(404) } } },
      async (req) => await devices.rotateSecret(req.params.id) ?? (() => { throw notFound(`device ${req.params.id}`) })())

    // ---- configuration ----
    app.put('/devices/:id/config', { ...write, schema: { tags: ['config'], summary: 'Store a new desired config version and push it', params: S.IdParams, body: S.PutConfigBody, response: { 200: Type.Object({ version: Type.Integer(), config: Type.Unknown(), delivered: Type.Boolean() }), ...S.errors(400, 404, 409) } } },
      async (req) => {
        const msg = await configs.setDesired(req.params.id, req.body.config, req.body.ifVersion)
        const delivered = await dispatch.deliver(req.params.id, `devices/${req.params.id}/config`, msg)
        return { ...msg, delivered }
      })

    app.get('/devices/:id/config', { ...read, schema: { tags: ['config'], summary: 'Desired and reported config, and whether they are in sync', params: S.IdParams, response: { 200: S.ConfigState, ...S.errors(404) } } },
      async (req) => {
        const s = await configs.get(req.params.id)
        return {
          desired: s.desired && { ...s.desired, updatedAt: iso(s.desired.updatedAt)! },
          reported: s.reported && { ...s.reported, updatedAt: iso(s.reported.updatedAt)! },
          inSync: s.inSync
        }
      })

    // ---- commands ----
    app.post('/devices/:id/commands', { ...write, schema: { tags: ['commands'], summary: 'Send a command (Idempotency-Key honoured for a day)', params: S.IdParams, headers: Type.Object({ 'idempotency-key': Type.Optional(S.IdempotencyKey) }), body: S.NewCommandBody, response: { 202: S.Command, 200: S.Command, ...S.errors(400, 404, 422) } } },
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
          deps.onCommandStatus?.('queued')
          if (await dispatch.deliver(command.deviceId, `devices/${command.deviceId}/commands/${command.id}`, toMessage(command))) {
            await commands.markSent([command.id])
            deps.onCommandStatus?.('sent')
            result = (await commands.get(command.id)) ?? command
          }
          req.log.info({ commandId: command.id, deviceId: command.deviceId, correlationId: req.id }, 'command created')
        }
        return reply.code(created ? 202 : 200).send(commandJson(result))
      })

    app.get('/commands/:id', { ...read, schema: { tags: ['commands'], summary: 'A command; waitSeconds holds the request until it finishes', params: Type.Object({ id: Type.String({ maxLength: 64 }) }), querystring: Type.Object({ waitSeconds: Type.Optional(Type.Integer({ minimum: 0, maximum: deps.maxWaitSeconds })) }, { additionalProperties: false }), response: { 200: S.Command, ...S.errors(400, 404) } } },
      async (req) => {
        const id = req.params.id
        let cmd = await commands.get(id)
        if (!cmd) throw notFound(`command ${id}`)
        const wait = req.query.waitSeconds ?? 0
        if (wait > 0 && !FINAL.has(cmd.status)) {
          await new Promise<void>((resolve) => {
            const set = waiters.get(id) ?? new Set()
            waiters.set(id, set)
            const done = () => { clearTimeout(timer); set.delete(done); if (set.size === 0) waiters.delete(id); req.raw.off('close', done); resolve() }
            const timer = setTimeout(done, wait * 1000)
            set.add(done)
            req.raw.once('close', done)
            // It may have finished between the read and the registration.
            void commands.get(id).then((c) => { if (c && FINAL.has(c.status)) done() }, () => {})
          })
          cmd = (await commands.get(id))!
        }
        return commandJson(cmd)
      })

    app.get('/devices/:id/commands', { ...read, schema: { tags: ['commands'], summary: "A device's commands, oldest first", params: S.IdParams, querystring: Type.Object({ limit: S.Limit, cursor: Type.Optional(S.Cursor) }, { additionalProperties: false }), response: { 200: S.page(S.Command), ...S.errors(400, 404) } } },
      async (req) => {
        if (!await devices.get(req.params.id)) throw notFound(`device ${req.params.id}`)
        const after = decodeCursor(req.query.cursor, [CURSOR.timestamp, CURSOR.uuid]) as [string, string] | undefined
        const items = await commands.list(req.params.id, req.query.limit, after)
        const last = items.at(-1)
        return { items: items.map(commandJson), nextCursor: last && items.length === req.query.limit ? encodeCursor([last.createdAt.toISOString(), last.id]) : null }
      })

    // ---- rollouts ----
    app.post('/rollouts', { ...write, schema: { tags: ['rollouts'], summary: 'Set a config on every device matching a selector, pushed at a rate', body: S.NewRolloutBody, response: { 201: S.Rollout, ...S.errors(400) } } },
      async (req, reply) => reply.code(201).send(rolloutJson(await rollouts.create(parseLabelSelector(req.body.selector), req.body.config, req.body.ratePerSecond ?? null))))

    app.get('/rollouts/:id', { ...read, schema: { tags: ['rollouts'], summary: 'A rollout with its counts', params: Type.Object({ id: Type.String({ maxLength: 64 }) }), response: { 200: S.Rollout, ...S.errors(404) } } },
      async (req) => rolloutJson(await rollouts.get(req.params.id) ?? (() => { throw notFound(`rollout ${req.params.id}`) })()))

    for (const action of ['pause', 'resume', 'cancel'] as const) {
      app.post(`/rollouts/:id/${action}`, { ...write, schema: { tags: ['rollouts'], summary: `${action[0]!.toUpperCase()}${action.slice(1)} a rollout`, params: Type.Object({ id: Type.String({ maxLength: 64 }) }), response: { 200: S.Rollout, ...S.errors(404, 409) } } },
        async (req) => {
          if (!await rollouts.get(req.params.id)) throw notFound(`rollout ${req.params.id}`)
          return rolloutJson(await rollouts.setStatus(req.params.id, action))
        })
    }

    // ---- telemetry ----
    app.get('/devices/:id/telemetry', { ...read, schema: { tags: ['telemetry'], summary: 'Readings in time order', params: S.IdParams, querystring: Type.Object({ from: Type.Optional(S.QueryTime), to: Type.Optional(S.QueryTime), limit: S.Limit, cursor: Type.Optional(S.Cursor) }, { additionalProperties: false }), response: { 200: S.page(S.Reading), ...S.errors(400, 404) } } },
      async (req, reply) => {
        const { from, to, limit } = req.query
        if (from && to && Date.parse(from) > Date.parse(to)) throw new ApiError(400, 'invalid_range', '`from` is after `to`')
        if (!await devices.get(req.params.id)) throw notFound(`device ${req.params.id}`)
        const after = decodeCursor(req.query.cursor, [CURSOR.timestamp, CURSOR.bigint]) as [string, string] | undefined
        // payload::text: each reading goes out exactly as PostgreSQL holds it.
        // Parsing it into JavaScript and serialising it again would round
        // numbers past 2^53 or 17 digits, turn 1e400 into null, and throw on
        // a reading nested a few thousand levels deep (JSON.stringify
        // recurses), failing every page that holds it with a 500.
        const { rows } = await deps.pool.query<{ ts: Date, received_at: Date, payload: string, ts_text: string, h: string }>(
          `SELECT ts, received_at, payload::text AS payload, ts::text AS ts_text, reading_hash::text AS h FROM telemetry
            WHERE device_id = $1 AND ($2::timestamptz IS NULL OR ts >= $2) AND ($3::timestamptz IS NULL OR ts < $3)
              AND ($4::timestamptz IS NULL OR (ts, reading_hash) > ($4::timestamptz, $5::bigint))
            ORDER BY ts, reading_hash LIMIT $6`,
          [req.params.id, from ?? null, to ?? null, after?.[0] ?? null, after?.[1] ?? null, limit])
        const last = rows.at(-1)
        const nextCursor = last && rows.length === limit ? encodeCursor([last.ts_text, last.h]) : null
        // The page is written here as text with the payloads spliced in
        // (fastify sends a string with a JSON content type as it is, without
        // the response schema's serializer); its shape is S.page(S.Reading).
        const items = rows.map((r) => `{"ts":"${r.ts.toISOString()}","receivedAt":"${r.received_at.toISOString()}","payload":${r.payload}}`)
        return reply.type('application/json; charset=utf-8').send(`{"items":[${items.join(',')}],"nextCursor":${JSON.stringify(nextCursor)}}` as never)
      })

    // ---- operator tokens ----
    app.post('/tokens', { ...admin, schema: { tags: ['tokens'], summary: 'Create an API token (shown only now)', body: S.NewTokenBody, response: { 201: Type.Intersect([S.Token, Type.Object({ token: Type.String() })]), ...S.errors(400) } } },
      async (req, reply) => {
        const created = await tokens.create(req.body.name, req.body.scopes)
        return reply.code(201).send({ ...tokenJson(created), token: created.token })
      })
    app.get('/tokens', { ...admin, schema: { tags: ['tokens'], summary: 'List API tokens', response: { 200: Type.Object({ items: Type.Array(S.Token) }), ...S.errors() } } },
      async () => ({ items: (await tokens.list()).map(tokenJson) }))
    app.delete('/tokens/:id', { ...admin, schema: { tags: ['tokens'], summary: 'Revoke an API token (at once)', params: Type.Object({ id: Type.String({ maxLength: 64 }) }), response: { 204: Type.Null(), ...S.errors(404) } } },
      async (req, reply) => {
        if (!await tokens.revoke(req.params.id)) throw notFound(`token ${req.params.id}`)
        return reply.code(204).send(null)
      })
  }, { prefix: '/v1' })
}

// /v1/tokens: operator API tokens (issue 3), admin scope only. A token's
// value is shown once, when it is created (devices/token-store.ts).
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import type pg from 'pg'
import { withChanges } from '../change-recorder.js'
import type { EventHub } from '../fleet-events.js'
import { actorOf, type OperatorAuth } from '../operator-auth.js'
import { OpaqueIdParams, errors, iso } from '../schemas.js'
import type { TokenInfo, TokenStore } from '../token-store.js'

const NewTokenBody = Type.Object({
  name: Type.String({ minLength: 1, maxLength: 100 }),
  scopes: Type.Array(Type.Union([Type.Literal('read'), Type.Literal('write'), Type.Literal('admin')]), { minItems: 1, uniqueItems: true })
}, { additionalProperties: false })

const Token = Type.Object({
  id: Type.String(),
  name: Type.String(),
  scopes: Type.Array(Type.String()),
  createdAt: Type.String({ format: 'date-time' }),
  revokedAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  lastUsedAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()])
})

const TOKEN_EXAMPLE = { id: 'tok_3f9a1c2b4d5e6f70', name: 'ci-deploy', scopes: ['write'], createdAt: '2026-11-29T10:00:00.000Z', revokedAt: null, lastUsedAt: null }
const CreatedToken = Type.Intersect([Token, Type.Object({ token: Type.String() })], { examples: [{ ...TOKEN_EXAMPLE, token: 'fgt_Zm9vYmFyYmF6cXV4cXV1eGZvb2JhcmJhenF1eA' }] })
const TokenList = Type.Object({ items: Type.Array(Token) }, { examples: [{ items: [TOKEN_EXAMPLE] }] })

const tokenJson = (t: TokenInfo) => ({ ...t, createdAt: iso(t.createdAt), revokedAt: iso(t.revokedAt), lastUsedAt: iso(t.lastUsedAt) })

export interface TokenRoutesOptions { auth: OperatorAuth, tokens: TokenStore, pool: pg.Pool, events: EventHub }

// What the audit trail shows of a token: never its value nor its hash.
const tokenSummary = (t: TokenInfo) => ({ id: t.id, name: t.name, scopes: t.scopes, revokedAt: iso(t.revokedAt) })

export const tokenRoutes: FastifyPluginAsyncTypebox<TokenRoutesOptions> = async (app, { auth, tokens, pool, events }) => {
  const admin = { preHandler: auth.require('admin') }
  const changes = { pool, hub: events }

  app.post('/tokens', { ...admin, schema: { operationId: 'createToken', tags: ['tokens'], summary: 'Create an API token (shown only now)', body: NewTokenBody, response: { 201: CreatedToken, ...errors(400) } } },
    async (req, reply) => {
      const created = await withChanges(changes, actorOf(req), async (client, rec) => {
        const t = await tokens.create(req.body.name, req.body.scopes, client)
        rec.audit({ action: 'token.create', targetType: 'token', targetId: t.id, before: null, after: tokenSummary(t) })
        return t
      })
      return reply.code(201).header('location', `/v1/tokens/${created.id}`).send({ ...tokenJson(created), token: created.token })
    })

  app.get('/tokens', { ...admin, schema: { operationId: 'listTokens', tags: ['tokens'], summary: 'List API tokens', response: { 200: TokenList, ...errors() } } },
    async () => ({ items: (await tokens.list()).map(tokenJson) }))

  app.delete('/tokens/:id', { ...admin, schema: { operationId: 'revokeToken', tags: ['tokens'], summary: 'Revoke an API token (at once)', params: OpaqueIdParams, response: { 204: Type.Null(), ...errors(404) } } },
    async (req, reply) => {
      await withChanges(changes, actorOf(req), async (client, rec) => {
        const { before, after } = await tokens.revoke(req.params.id, client)
        rec.audit({ action: 'token.revoke', targetType: 'token', targetId: before.id, before: tokenSummary(before), after: tokenSummary(after) })
      })
      return reply.code(204).send(null)
    })
}

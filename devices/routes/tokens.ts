// /v1/tokens: operator API tokens (issue 3), admin scope only. A token's
// value is shown once, when it is created (devices/token-store.ts).
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import type { OperatorAuth } from '../operator-auth.js'
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

const CreatedToken = Type.Intersect([Token, Type.Object({ token: Type.String() })])

const tokenJson = (t: TokenInfo) => ({ ...t, createdAt: iso(t.createdAt), revokedAt: iso(t.revokedAt), lastUsedAt: iso(t.lastUsedAt) })

export interface TokenRoutesOptions { auth: OperatorAuth, tokens: TokenStore }

export const tokenRoutes: FastifyPluginAsyncTypebox<TokenRoutesOptions> = async (app, { auth, tokens }) => {
  const admin = { preHandler: auth.require('admin') }

  app.post('/tokens', { ...admin, schema: { tags: ['tokens'], summary: 'Create an API token (shown only now)', body: NewTokenBody, response: { 201: CreatedToken, ...errors(400) } } },
    async (req, reply) => {
      const created = await tokens.create(req.body.name, req.body.scopes)
      return reply.code(201).send({ ...tokenJson(created), token: created.token })
    })

  app.get('/tokens', { ...admin, schema: { tags: ['tokens'], summary: 'List API tokens', response: { 200: Type.Object({ items: Type.Array(Token) }), ...errors() } } },
    async () => ({ items: (await tokens.list()).map(tokenJson) }))

  app.delete('/tokens/:id', { ...admin, schema: { tags: ['tokens'], summary: 'Revoke an API token (at once)', params: OpaqueIdParams, response: { 204: Type.Null(), ...errors(404) } } },
    async (req, reply) => {
      await tokens.revoke(req.params.id)
      return reply.code(204).send(null)
    })
}

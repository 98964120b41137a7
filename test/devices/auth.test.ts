import test from 'ava'
import { startTestBroker, api, type TestBroker } from '../helpers/broker.js'

let broker: TestBroker
test.before(async () => { broker = await startTestBroker({ API_RATE_LIMIT_PER_MINUTE: 30 }) })
test.after.always(async () => { await broker?.close(); await broker?.db.drop() })

test('no token or a bad token: 401 problem+json with WWW-Authenticate', async (t) => {
  const none = await api(broker.app, 'GET', '/v1/devices', undefined, null)
  t.is(none.status, 401)
  t.is(none.body.code, 'unauthorized')
  t.truthy(none.headers['www-authenticate'])
  const bad = await api(broker.app, 'GET', '/v1/devices', undefined, 'not-a-token')
  t.is(bad.status, 401)
})

test('scopes: read cannot write (403), write cannot manage tokens, admin can; revoked tokens stop at once', async (t) => {
  const reader = await api(broker.app, 'POST', '/v1/tokens', { name: 'dash', scopes: ['read'] })
  t.is(reader.status, 201)
  t.regex(reader.body.token, /^fgt_/)
  const writer = await api(broker.app, 'POST', '/v1/tokens', { name: 'ci', scopes: ['write'] })
  t.is((await api(broker.app, 'GET', '/v1/devices', undefined, reader.body.token)).status, 200)
  const denied = await api(broker.app, 'POST', '/v1/devices', {}, reader.body.token)
  t.is(denied.status, 403)
  t.is(denied.body.code, 'forbidden')
  t.is((await api(broker.app, 'POST', '/v1/devices', {}, writer.body.token)).status, 201)
  t.is((await api(broker.app, 'GET', '/v1/tokens', undefined, writer.body.token)).status, 403)
  const list = await api(broker.app, 'GET', '/v1/tokens')
  t.true(list.body.items.some((x: { id: string }) => x.id === reader.body.id))
  t.false(JSON.stringify(list.body).includes(reader.body.token), 'tokens are shown only at creation')
  t.is((await api(broker.app, 'DELETE', `/v1/tokens/${reader.body.id}`)).status, 204)
  t.is((await api(broker.app, 'GET', '/v1/devices', undefined, reader.body.token)).status, 401)
  t.is((await api(broker.app, 'DELETE', '/v1/tokens/tok_missing')).status, 404)
  const { rows } = await broker.app.pool.query('SELECT token_hash FROM api_tokens WHERE id = $1', [writer.body.id])
  t.not(rows[0].token_hash, writer.body.token)
})

test.serial('rate limit per token: 429 with Retry-After', async (t) => {
  const own = await api(broker.app, 'POST', '/v1/tokens', { name: 'busy', scopes: ['read'] })
  let last
  for (let i = 0; i < 31; i++) last = await api(broker.app, 'GET', '/v1/devices', undefined, own.body.token)
  t.is(last!.status, 429)
  t.is(last!.body.code, 'rate_limited')
  t.truthy(Number(last!.headers['retry-after']) > 0)
})

test('failed authentications from one address are cut off with 429 before any token look-up', async (t) => {
  const b = await startTestBroker({ API_AUTH_FAILURES_PER_MINUTE: 5 })
  t.teardown(async () => { await b.close(); await b.db.drop() })
  const apiToken = (await api(b.app, 'POST', '/v1/tokens', { name: 'ops', scopes: ['read'] })).body.token as string
  t.is((await api(b.app, 'GET', '/v1/devices', undefined, apiToken)).status, 200)
  const codes: number[] = []
  for (let i = 0; i < 8; i++) codes.push((await api(b.app, 'GET', '/v1/devices', undefined, `wrong-token-${i}`)).status)
  t.deepEqual(codes, [401, 401, 401, 401, 401, 429, 429, 429])
  const limited = await api(b.app, 'GET', '/v1/devices', undefined, 'wrong-token-x')
  t.is(limited.body.code, 'rate_limited')
  t.truthy(limited.headers['retry-after'])
  // The admin token, and an API token that verified recently, still work from that address.
  t.is((await api(b.app, 'GET', '/v1/devices')).status, 200)
  t.is((await api(b.app, 'GET', '/v1/devices', undefined, apiToken)).status, 200)
})

// Request bodies are JSON in UTF-8 and nothing else (devices/json-body.ts):
// every other body is a 4xx problem+json that says why, never a 500, and
// never a body quietly read as something the client did not send.
import test from 'ava'
import { startTestBroker, api, TEST_ADMIN_TOKEN, type TestBroker } from '../helpers/broker.js'
import { MAX_JSON_DEPTH } from '../../devices/json-body.js'

let broker: TestBroker
// Serial: the tests share the device body-1 and read back its config.
test.before(async () => {
  broker = await startTestBroker({ API_RATE_LIMIT_PER_MINUTE: 100_000 })
  await api(broker.app, 'POST', '/v1/devices', { id: 'body-1' })
})
test.after.always(async () => { await broker?.close(); await broker?.db.drop() })

async function send (method: 'POST' | 'PUT' | 'PATCH', url: string, payload: string | Buffer, contentType?: string) {
  const res = await broker.app.http.inject({
    method,
    url,
    payload,
    headers: { authorization: `Bearer ${TEST_ADMIN_TOKEN}`, ...(contentType !== undefined ? { 'content-type': contentType } : {}) }
  })
  let body: any // eslint-disable-line @typescript-eslint/no-explicit-any
  try { body = JSON.parse(res.body) } catch { body = res.body }
  return { status: res.statusCode, body, headers: res.headers, raw: res.body }
}

const nested = (levels: number) => '{"a":'.repeat(levels) + '1' + '}'.repeat(levels)

test.serial('a body nested 5,000 levels deep is 400 invalid_request, on every route, and nothing is stored', async (t) => {
  const deepConfig = `{"config":${nested(5000)}}`
  const put = await send('PUT', '/v1/devices/body-1/config', deepConfig, 'application/json')
  t.is(put.status, 400, put.raw.slice(0, 300))
  t.is(put.body.code, 'invalid_request')
  t.regex(put.body.detail, new RegExp(`deeper than ${MAX_JSON_DEPTH} levels`))
  t.regex(String(put.headers['content-type']), /^application\/problem\+json/)
  t.is((await api(broker.app, 'GET', '/v1/devices/body-1/config')).body.desired, null)

  for (const [method, url, body] of [
    ['POST', '/v1/devices/body-1/commands', `{"name":"x","params":${nested(5000)}}`],
    ['POST', '/v1/rollouts', `{"selector":"","config":${nested(5000)}}`],
    ['POST', '/v1/devices', '['.repeat(10_000) + ']'.repeat(10_000)],
    ['PATCH', '/v1/devices/body-1', `{"labels":${nested(5000)}}`]
  ] as const) {
    const r = await send(method, url, body, 'application/json')
    t.is(r.status, 400, `${method} ${url}`)
    t.is(r.body.code, 'invalid_request', `${method} ${url}`)
  }
})

test.serial(`the nesting bound is ${MAX_JSON_DEPTH} levels, the body itself being the first`, async (t) => {
  // {"config": …} is one level, so the config may nest MAX_JSON_DEPTH - 1 more.
  const ok = await send('PUT', '/v1/devices/body-1/config', `{"config":${nested(MAX_JSON_DEPTH - 1)}}`, 'application/json')
  t.is(ok.status, 200, ok.raw.slice(0, 300))
  const over = await send('PUT', '/v1/devices/body-1/config', `{"config":${nested(MAX_JSON_DEPTH)}}`, 'application/json')
  t.is(over.status, 400)
  t.is(over.body.code, 'invalid_request')
})

test.serial('anything but application/json in UTF-8 is 415 unsupported_media_type', async (t) => {
  for (const type of [
    'text/plain', 'text/plain; charset=utf-8', 'application/json; charset=utf-16', 'application/json; charset=iso-8859-1',
    'application/json; charset=utf-8; charset=utf-16', 'application/x-www-form-urlencoded', 'application/merge-patch+json',
    'application/vnd.api+json', 'application/jsonx', 'multipart/form-data; boundary=x'
  ]) {
    const r = await send('POST', '/v1/devices', '{"id":"ct-refused"}', type)
    t.is(r.status, 415, type)
    t.is(r.body.code, 'unsupported_media_type', type)
    t.regex(String(r.headers['content-type']), /^application\/problem\+json/, type)
  }
  t.is((await api(broker.app, 'GET', '/v1/devices/ct-refused')).status, 404, 'nothing was created')
  // A body without any content type is not guessed at either.
  const none = await send('POST', '/v1/devices', '{"id":"ct-none"}')
  t.is(none.status, 415)
  t.is(none.body.code, 'unsupported_media_type')
})

test.serial('application/json with no charset or charset=utf-8, in any case, is accepted', async (t) => {
  const types = ['application/json', 'Application/JSON', 'application/json; charset=utf-8', 'application/json;charset=UTF-8', 'application/json; charset="utf-8"']
  for (const [i, type] of types.entries()) {
    const r = await send('POST', '/v1/devices', `{"id":"ct-ok-${i}"}`, type)
    t.is(r.status, 201, type)
  }
})

test.serial('bytes that are not UTF-8 are 400, not replaced with U+FFFD and stored', async (t) => {
  const body = Buffer.concat([Buffer.from('{"id":"utf8-bad","name":"caf'), Buffer.from([0xe9]), Buffer.from('"}')])
  const r = await send('POST', '/v1/devices', body, 'application/json')
  t.is(r.status, 400)
  t.is(r.body.code, 'invalid_request')
  t.regex(r.body.detail, /UTF-8/)
  t.is((await api(broker.app, 'GET', '/v1/devices/utf8-bad')).status, 404)
  const good = await send('POST', '/v1/devices', Buffer.from('{"id":"utf8-good","name":"café ☕"}'), 'application/json')
  t.is(good.status, 201)
  t.is((await api(broker.app, 'GET', '/v1/devices/utf8-good')).body.name, 'café ☕')
})

test.serial('a member name given twice is 400 naming it, not "the last one wins"', async (t) => {
  const r = await send('POST', '/v1/devices', '{"id":"dup-a","id":"dup-b"}', 'application/json')
  t.is(r.status, 400)
  t.is(r.body.code, 'invalid_request')
  t.regex(r.body.detail, /"id" appears twice/)
  t.is((await api(broker.app, 'GET', '/v1/devices/dup-b')).status, 404)
  // Also deeper down, and also when spelled with escapes.
  const nestedDup = await send('PATCH', '/v1/devices/body-1', '{"labels":{"site":"a","s\\u0069te":"b"}}', 'application/json')
  t.is(nestedDup.status, 400)
  t.regex(nestedDup.body.detail, /"site" appears twice/)
  // The same name in different objects is fine.
  t.is((await send('PUT', '/v1/devices/body-1/config', '{"config":{"a":{"x":1},"b":{"x":2},"c":[{"x":1},{"x":2}]}}', 'application/json')).status, 200)
})

test.serial('numbers that JavaScript would change are 400, not stored rounded or as null', async (t) => {
  for (const n of ['9007199254740993', '123456789012345678901234567890', '1e400', '-1e400', '1e-400', '0.1000000000000000055511151231257827']) {
    const r = await send('PUT', '/v1/devices/body-1/config', `{"config":{"n":${n}}}`, 'application/json')
    t.is(r.status, 400, n)
    t.is(r.body.code, 'invalid_request', n)
    t.regex(r.body.detail, /cannot be represented exactly.*string/, n)
    const cmd = await send('POST', '/v1/devices/body-1/commands', `{"name":"x","params":{"n":${n}}}`, 'application/json')
    t.is(cmd.status, 400, `command params ${n}`)
  }
  // Numbers a double holds exactly go through, whatever their spelling.
  const ok = await send('PUT', '/v1/devices/body-1/config', '{"config":{"a":9007199254740991,"b":0.1,"c":1.50,"d":-0,"e":1e21,"f":2.5e-3,"g":1E2}}', 'application/json')
  t.is(ok.status, 200, ok.raw)
  t.deepEqual((await api(broker.app, 'GET', '/v1/devices/body-1/config')).body.desired.config, { a: 9007199254740991, b: 0.1, c: 1.5, d: 0, e: 1e21, f: 0.0025, g: 100 })
})

test.serial('__proto__ members are refused by name', async (t) => {
  const r = await send('POST', '/v1/devices', '{"id":"proto-1","labels":{"__proto__":"x"}}', 'application/json')
  t.is(r.status, 400)
  t.regex(r.body.detail, /__proto__/)
})

test.serial('bad JSON and empty bodies stay 400 invalid_request', async (t) => {
  for (const body of ['{"id":', '{"id":"x",}', 'nul', '{"id":"x"} trailing']) {
    const r = await send('POST', '/v1/devices', body, 'application/json')
    t.is(r.status, 400, body)
    t.is(r.body.code, 'invalid_request', body)
  }
  const empty = await send('POST', '/v1/devices', '', 'application/json')
  t.is(empty.status, 400)
  t.is(empty.body.code, 'invalid_request')
})

test.serial('body limits are unchanged: 1 MiB in general (413 payload_too_large), 64 MiB for bulk creation', async (t) => {
  const big = JSON.stringify({ name: 'x'.repeat(1024 * 1024) })
  const r = await send('POST', '/v1/devices', big, 'application/json')
  t.is(r.status, 413)
  t.is(r.body.code, 'payload_too_large')
  t.regex(String(r.headers['content-type']), /^application\/problem\+json/)
  // The bulk route takes far more than 1 MiB, through the same parser.
  const devices = Array.from({ length: 20_000 }, (_, i) => ({ id: `bulk-body-${i}`, name: 'n'.repeat(40) }))
  const bulk = await send('POST', '/v1/devices/bulk', JSON.stringify({ devices }), 'application/json')
  t.true(JSON.stringify({ devices }).length > 1024 * 1024)
  t.is(bulk.status, 200)
  t.is(bulk.raw.trim().split('\n').length, 20_000)
  // …and refuses a text/plain one like every other route.
  t.is((await send('POST', '/v1/devices/bulk', JSON.stringify({ count: 1, idPrefix: 'p' }), 'text/plain')).status, 415)
})

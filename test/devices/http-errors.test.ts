// Errors raised before any route runs — by fastify's router or by Node's
// HTTP parser — are application/problem+json with a stable code, like every
// other error of the API (devices/problem-details.ts).
import test from 'ava'
import net from 'node:net'
import { startTestBroker, api, type TestBroker } from '../helpers/broker.js'

let broker: TestBroker
test.before(async () => { broker = await startTestBroker({ API_RATE_LIMIT_PER_MINUTE: 100_000 }) })
test.after.always(async () => { await broker?.close(); await broker?.db.drop() })

/** Sends raw bytes to the HTTP port; resolves with everything read until the server closes. */
async function rawHttp (bytes: string): Promise<{ status: number, headers: string, body: string }> {
  const { port } = broker.app.http.server.address() as net.AddressInfo
  const socket = net.connect(port, '127.0.0.1')
  const chunks: Buffer[] = []
  socket.on('data', (c: Buffer) => chunks.push(c))
  await new Promise<void>((resolve, reject) => { socket.once('connect', resolve); socket.once('error', reject) })
  socket.write(bytes)
  await new Promise<void>((resolve) => { socket.once('close', () => resolve()); socket.once('error', () => resolve()) })
  const text = Buffer.concat(chunks).toString('utf8')
  const [head, body] = [text.slice(0, text.indexOf('\r\n\r\n')), text.slice(text.indexOf('\r\n\r\n') + 4)]
  return { status: Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1]), headers: head.toLowerCase(), body }
}

test('a path that is not valid percent-encoding is 400 invalid_request as problem+json', async (t) => {
  const r = await api(broker.app, 'GET', '/v1/devices/%E0%A4%A')
  t.is(r.status, 400)
  t.is(r.body.code, 'invalid_request')
  t.regex(String(r.headers['content-type']), /^application\/problem\+json/)
})

test('unknown routes are 404 not_found as problem+json', async (t) => {
  for (const url of ['/v1/nothing', '/v1/devices/x/nothing', '/v2/devices']) {
    const r = await api(broker.app, 'GET', url)
    t.is(r.status, 404, url)
    t.is(r.body.code, 'not_found', url)
    t.regex(String(r.headers['content-type']), /^application\/problem\+json/)
  }
})

test('a known path with a method it does not take is 405 method_not_allowed with Allow, as problem+json', async (t) => {
  for (const [method, url, allow] of [
    ['PUT', '/v1/devices', 'GET, HEAD, POST'],
    ['DELETE', '/v1/rollouts/x', 'GET, HEAD'],
    ['POST', '/v1/devices/x/config', 'GET, HEAD, PUT']
  ] as const) {
    const r = await api(broker.app, method, url)
    t.is(r.status, 405, url)
    t.is(r.body.code, 'method_not_allowed', url)
    t.is(r.headers.allow, allow, url)
    t.regex(String(r.headers['content-type']), /^application\/problem\+json/)
  }
})

test('a path the router cannot take is never a 405, whatever the method', async (t) => {
  for (const [url, status, code] of [['/v1/devices/%E0%A4%A', 400, 'invalid_request'], [`/v1/devices/${'h'.repeat(600)}`, 404, 'not_found']] as const) {
    const r = await broker.app.http.inject({ method: 'OPTIONS', url })
    t.is(r.statusCode, status, url)
    t.is(JSON.parse(r.body).code, code, url)
    t.is(r.headers.allow, undefined, url)
  }
})

test('a request Node cannot parse as HTTP is 400 invalid_request as problem+json, then closed', async (t) => {
  const r = await rawHttp('THIS IS NOT HTTP\r\n\r\n')
  t.is(r.status, 400)
  t.regex(r.headers, /content-type: application\/problem\+json/)
  t.regex(r.headers, /connection: close/)
  const body = JSON.parse(r.body)
  t.is(body.code, 'invalid_request')
  t.is(body.status, 400)
})

test('headers larger than Node takes are 431 headers_too_large as problem+json', async (t) => {
  const r = await rawHttp(`GET /v1/devices HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`)
  t.is(r.status, 431)
  t.regex(r.headers, /content-type: application\/problem\+json/)
  t.is(JSON.parse(r.body).code, 'headers_too_large')
})

test('over real HTTP, a well-formed request still gets its answer', async (t) => {
  const r = await rawHttp('GET /v1/nothing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')
  t.is(r.status, 404)
  t.is(JSON.parse(r.body).code, 'not_found')
})

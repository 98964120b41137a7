// `helm test`: the release answers on its Services. Run by the broker image's
// own node (templates/tests/connection-test.yaml), Node.js built-ins only, so
// it needs nothing the image might not have and no package version to match.
//   1. GET READYZ_URL until it answers 200 (the broker is ready: database,
//      Redis, ingest all fine); its body says why when it is not.
//   2. An MQTT 3.1.1 CONNECT to the MQTT Service, written as raw bytes, and a
//      CONNACK read back. The test has no device credentials, so the broker
//      answers return code 5 (not authorized) - any CONNACK proves the
//      listener, the MQTT parser and the authentication path answer. A
//      client library would report that refusal as an error and retry; here
//      the bytes say exactly what came back.
// Settings (environment): READYZ_URL; MQTT_TRANSPORT tcp | tls | ws | tcp-open
// (tcp-open: TLS with required client certificates and no other listener -
// only the TCP connection to the port can be checked); MQTT_HOST, MQTT_PORT
// (tcp, tls, tcp-open); MQTT_WS_URL (ws); DEADLINE_SECONDS.
'use strict'
const net = require('node:net')
const tls = require('node:tls')

const env = process.env
const deadline = Date.now() + Number(env.DEADLINE_SECONDS || 60) * 1000
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
const log = (msg) => console.log(`[fleetgate test] ${msg}`)

const CLIENT_ID = Buffer.from('fleetgate-helm-test')
// Fixed header: CONNECT (0x10), remaining length. Variable header: protocol
// name "MQTT", level 4 (3.1.1), flags 0x02 (clean session), keep-alive 60 s.
// Payload: the client id. [MQTT-3.1]
const CONNECT = Buffer.concat([
  Buffer.from([0x10, 10 + 2 + CLIENT_ID.length, 0x00, 0x04, 0x4d, 0x51, 0x54, 0x54, 0x04, 0x02, 0x00, 0x3c, 0x00, CLIENT_ID.length]),
  CLIENT_ID
])
const DISCONNECT = Buffer.from([0xe0, 0x00])
const RETURN_CODES = ['accepted', 'unacceptable protocol version', 'identifier rejected', 'server unavailable', 'bad user name or password', 'not authorized']

async function retry (what, attempt) {
  let last
  for (;;) {
    try { return await attempt() } catch (err) { last = err }
    if (Date.now() >= deadline) throw new Error(`${what}: ${last && last.message}`)
    log(`${what}: ${last && last.message}; retrying`)
    await sleep(2000)
  }
}

async function checkReady () {
  const url = env.READYZ_URL
  await retry(`GET ${url}`, async () => {
    const res = await fetch(url, { signal: AbortSignal.timeout(5000) })
    const body = (await res.text()).slice(0, 500)
    if (res.status !== 200) throw new Error(`HTTP ${res.status} ${body}`)
    log(`GET ${url}: 200 ${body}`)
  })
}

// Resolves with the CONNACK return code, from a stream (TCP or TLS socket).
function connackOverSocket (socket) {
  return new Promise((resolve, reject) => {
    let got = Buffer.alloc(0)
    const timer = setTimeout(() => { socket.destroy(); reject(new Error('no CONNACK within 10 s')) }, 10000)
    const done = (err, code) => { clearTimeout(timer); socket.destroy(); if (err) reject(err); else resolve(code) }
    socket.on('error', (err) => done(err))
    socket.on('close', () => done(new Error(`connection closed after ${got.length} bytes, without a CONNACK`)))
    socket.on('data', (chunk) => {
      got = Buffer.concat([got, chunk])
      if (got.length < 4) return
      if (got[0] !== 0x20 || got[1] !== 0x02) return done(new Error(`expected a CONNACK (20 02 ...), got ${got.subarray(0, 8).toString('hex')}`))
      if (got[3] === 0) socket.write(DISCONNECT)
      done(null, got[3])
    })
  })
}

function connackOverWebSocket (url) {
  // Node.js 22 has a global WebSocket; older ones use the image's `ws`.
  const WebSocketImpl = globalThis.WebSocket || require('ws')
  return new Promise((resolve, reject) => {
    const ws = new WebSocketImpl(url, 'mqtt')
    ws.binaryType = 'arraybuffer'
    const timer = setTimeout(() => { ws.close(); reject(new Error('no CONNACK within 10 s')) }, 10000)
    const done = (err, code) => { clearTimeout(timer); try { ws.close() } catch {} if (err) reject(err); else resolve(code) }
    ws.onopen = () => ws.send(CONNECT)
    ws.onerror = (e) => done(new Error(`WebSocket error ${(e && e.message) || ''}`.trim()))
    ws.onclose = () => done(new Error('WebSocket closed without a CONNACK'))
    // The broker may split the CONNACK over several WebSocket messages.
    let got = Buffer.alloc(0)
    ws.onmessage = (e) => {
      got = Buffer.concat([got, Buffer.from(e.data)])
      if (got.length < 4) return
      if (got[0] !== 0x20 || got[1] !== 0x02) return done(new Error(`expected a CONNACK (20 02 ...), got ${got.subarray(0, 8).toString('hex')}`))
      if (got[3] === 0) ws.send(DISCONNECT)
      done(null, got[3])
    }
  })
}

function tcpOpen (host, port) {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host, port, timeout: 10000 })
    socket.on('connect', () => { socket.destroy(); resolve() })
    socket.on('timeout', () => { socket.destroy(); reject(new Error('TCP connect timed out')) })
    socket.on('error', reject)
  })
}

async function checkMqtt () {
  const transport = env.MQTT_TRANSPORT
  const host = env.MQTT_HOST
  const port = Number(env.MQTT_PORT)
  if (transport === 'tcp-open') {
    await retry(`TCP connect ${host}:${port}`, () => tcpOpen(host, port))
    log(`MQTT over TLS ${host}:${port} accepts connections (client certificates are required, so no CONNACK without one)`)
    return
  }
  const where = transport === 'ws' ? env.MQTT_WS_URL : `${transport}://${host}:${port}`
  const code = await retry(`MQTT CONNECT to ${where}`, () => {
    if (transport === 'ws') return connackOverWebSocket(env.MQTT_WS_URL)
    if (transport === 'tls') {
      // The listener is under test, not its certificate (which names the
      // public host, not the Service).
      return connackOverSocket(tls.connect({ host, port, ...(net.isIP(host) ? {} : { servername: host }), rejectUnauthorized: false }, function () { this.write(CONNECT) }))
    }
    if (transport === 'tcp') return connackOverSocket(net.connect({ host, port }, function () { this.write(CONNECT) }))
    throw new Error(`unknown MQTT_TRANSPORT ${transport}`)
  })
  log(`MQTT ${where}: CONNACK return code ${code} (${RETURN_CODES[code] || 'unknown'}${code === 5 ? ': expected, the test sends no credentials' : ''})`)
}

checkReady().then(checkMqtt).then(() => {
  log('passed')
  process.exit(0)
}, (err) => {
  log(`FAILED: ${err.message}`)
  process.exit(1)
})

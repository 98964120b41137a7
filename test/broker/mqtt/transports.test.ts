// Issue 7 transports: MQTT over TLS (1.2+, optional mutual TLS) and over
// WebSocket, with the same authentication and ACL as TCP.
import test from 'ava'
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { connect as tlsConnect } from 'node:tls'
import mqtt from 'mqtt'
import pg from 'pg'
import { startTestBroker, connackCode } from '../../helpers/broker.js'
import { T0 } from '../../helpers/time.js'

// Test certificates, made the way the README shows: a CA, a server
// certificate for 127.0.0.1, device certificates whose CN is the device id.
const dir = mkdtempSync(join(tmpdir(), 'fleetgate-certs-'))
const ssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' })
ssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=fleetgate test CA')
function signed (name: string, cn: string, ext?: string) {
  ssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`)
  const args = ['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${name}.pem`, '-days', '2']
  if (ext) { writeFileSync(join(dir, `${name}.ext`), ext); args.push('-extfile', `${name}.ext`) }
  ssl(...args)
}
signed('server', 'localhost', 'subjectAltName=IP:127.0.0.1,DNS:localhost')
signed('dev1', 'tls-dev-1')
signed('other', 'tls-other')
ssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'rogue.key', '-out', 'rogue.pem', '-days', '2', '-subj', '/CN=tls-dev-1')
const file = (f: string) => join(dir, f)
const read = (f: string) => readFileSync(file(f))

test('TLS listener: devices authenticate with their secret over TLS 1.2+; older TLS is refused', async (t) => {
  const broker = await startTestBroker({ MQTT_TLS_ENABLED: true, MQTT_TLS_PORT: 0, MQTT_TLS_KEY_FILE: file('server.key'), MQTT_TLS_CERT_FILE: file('server.pem') })
  const dev = await broker.app.devices.create({ id: 'tls-pw-1' })
  const url = `mqtts://127.0.0.1:${broker.app.mqttTlsPort}`
  const client = await mqtt.connectAsync(url, { ca: read('ca.pem'), clientId: dev.id, username: dev.id, password: dev.secret, reconnectPeriod: 0 })
  await client.publishAsync(`devices/${dev.id}/telemetry`, JSON.stringify({ ts: T0, v: 1 }), { qos: 1 })
  await client.endAsync()
  t.is(await connackCode(url, { ca: read('ca.pem'), clientId: dev.id, username: dev.id, password: 'wrong' }), 4)
  const old = await new Promise<string>((resolve) => {
    const s = tlsConnect({ host: '127.0.0.1', port: broker.app.mqttTlsPort!, ca: read('ca.pem'), maxVersion: 'TLSv1.1', minVersion: 'TLSv1' })
    s.on('secureConnect', () => { s.destroy(); resolve('connected') })
    s.on('error', (e) => resolve(e.message))
  })
  t.not(old, 'connected')
  const db = new pg.Client({ connectionString: broker.db.url }); await db.connect()
  t.is((await db.query("SELECT count(*)::int AS n FROM telemetry WHERE device_id = 'tls-pw-1'")).rows[0].n, 1)
  await db.end()
  await broker.close(); await broker.db.drop()
})

test('mutual TLS: the certificate alone identifies the device and must name its client id', async (t) => {
  const broker = await startTestBroker({
    MQTT_TLS_ENABLED: true,
    MQTT_TLS_PORT: 0,
    MQTT_TLS_KEY_FILE: file('server.key'),
    MQTT_TLS_CERT_FILE: file('server.pem'),
    MQTT_TLS_CA_FILE: file('ca.pem'),
    MQTT_TLS_CLIENT_CERT: 'required',
    MQTT_TLS_PASSWORD_AUTH: false
  })
  await broker.app.devices.create({ id: 'tls-dev-1' })
  await broker.app.devices.create({ id: 'tls-other' })
  const url = `mqtts://127.0.0.1:${broker.app.mqttTlsPort}`
  const base = { ca: read('ca.pem'), reconnectPeriod: 0, connectTimeout: 5000 }
  const ok = await mqtt.connectAsync(url, { ...base, key: read('dev1.key'), cert: read('dev1.pem'), clientId: 'tls-dev-1' })
  t.true(ok.connected, 'no password needed')
  await ok.endAsync()
  t.is(await connackCode(url, { ...base, key: read('other.key'), cert: read('other.pem'), clientId: 'tls-dev-1' }), 5, "another device's certificate")
  t.is(await connackCode(url, { ...base, clientId: 'tls-dev-1' }), -1, 'no certificate: refused in the handshake')
  t.is(await connackCode(url, { ...base, key: read('rogue.key'), cert: read('rogue.pem'), clientId: 'tls-dev-1' }), -1, 'a certificate the CA did not sign: refused')
  // The plain TCP listener keeps password authentication.
  t.is(await connackCode(broker.url, { clientId: 'tls-dev-1' }), 5)
  await broker.close(); await broker.db.drop()
})

test('MQTT over WebSocket: same authentication and ACL as TCP', async (t) => {
  const broker = await startTestBroker()
  const dev = await broker.app.devices.create({ id: 'ws-dev-1' })
  const url = `ws://127.0.0.1:${broker.app.httpPort}/mqtt`
  const client = await mqtt.connectAsync(url, { clientId: dev.id, username: dev.id, password: dev.secret, reconnectPeriod: 0 })
  await client.publishAsync(`devices/${dev.id}/telemetry`, JSON.stringify({ ts: T0, v: 'ws' }), { qos: 1 })
  const closed = new Promise<void>((resolve) => client.once('close', () => resolve()))
  client.publish('devices/someone-else/telemetry', '{}', { qos: 1 })
  await closed
  t.is(await connackCode(url, { clientId: dev.id, username: dev.id, password: 'nope' }), 4)
  const db = new pg.Client({ connectionString: broker.db.url }); await db.connect()
  t.is((await db.query("SELECT payload->>'v' AS v FROM telemetry WHERE device_id = 'ws-dev-1'")).rows[0].v, 'ws')
  await db.end()
  client.end(true)
  await broker.close(); await broker.db.drop()
})

test('each listener can be switched off', async (t) => {
  const broker = await startTestBroker({ MQTT_TCP_ENABLED: false, MQTT_WS_ENABLED: false })
  t.is(broker.app.mqttPort, 0)
  t.is(await connackCode(`ws://127.0.0.1:${broker.app.httpPort}/mqtt`, { clientId: 'x', connectTimeout: 2000 }), -1)
  await broker.close(); await broker.db.drop()
})

test('TLS settings are validated at start', (t) => {
  t.throws(() => startTestBrokerConfig({ MQTT_TLS_ENABLED: 'true' }), { message: /MQTT_TLS_KEY_FILE and MQTT_TLS_CERT_FILE: required/ })
  t.throws(() => startTestBrokerConfig({ MQTT_TLS_CLIENT_CERT: 'required' }), { message: /MQTT_TLS_CA_FILE: required/ })
  t.throws(() => startTestBrokerConfig({ MQTT_TLS_PASSWORD_AUTH: 'false' }), { message: /MQTT_TLS_PASSWORD_AUTH=false needs MQTT_TLS_CLIENT_CERT=required/ })
})

import { loadConfig } from '../../../broker/config.js'
function startTestBrokerConfig (env: Record<string, string>) { return loadConfig(env) }

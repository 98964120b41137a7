// The `helm test` script (helm/fleetgate/files/connection-test.js), run the
// way the test pod runs it — `node -e <script>` with the environment the
// chart renders — against a real broker: it passes when /readyz is 200 and a
// CONNACK comes back over TCP, TLS or WebSocket, and fails, saying why, when
// the broker is not ready or something that is not MQTT answers.
import test from 'ava'
import { execFileSync, spawn } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { createServer as createHttpServer, type Server } from 'node:http'
import { createServer as createTcpServer, type AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startTestBroker, type TestBroker } from '../helpers/broker.js'
import { CHART, renderChart } from '../helpers/helm.js'

const SCRIPT_FILE = join(CHART, 'files', 'connection-test.js')

interface Run { code: number | null, out: string }

/** Runs the script as the pod does: node -e, settings from the environment. */
async function runScript (env: Record<string, string>): Promise<Run> {
  const script = readFileSync(SCRIPT_FILE, 'utf8')
  const child = spawn(process.execPath, ['-e', script], { env: { PATH: process.env.PATH ?? '', DEADLINE_SECONDS: '10', ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  child.stdout.on('data', (d: Buffer) => { out += d.toString() })
  child.stderr.on('data', (d: Buffer) => { out += d.toString() })
  const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)))
  return { code, out }
}

// A server certificate for the TLS listener (the script does not verify it,
// as the pod cannot: the certificate names the public host).
const certDir = mkdtempSync(join(tmpdir(), 'fleetgate-helm-test-certs-'))
execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'server.key', '-out', 'server.pem', '-days', '2', '-subj', '/CN=mqtt.example.com'], { cwd: certDir, stdio: 'pipe' })

let broker: TestBroker
test.before(async () => {
  broker = await startTestBroker({ MQTT_TLS_ENABLED: true, MQTT_TLS_PORT: 0, MQTT_TLS_KEY_FILE: join(certDir, 'server.key'), MQTT_TLS_CERT_FILE: join(certDir, 'server.pem') })
})
test.after.always(async () => {
  if (broker) { await broker.close(); await broker.db.drop() }
  rmSync(certDir, { recursive: true, force: true })
})

const readyz = () => `http://127.0.0.1:${broker.app.httpPort}/readyz`

test('the pod runs exactly this script, with these settings', async (t) => {
  const r = await renderChart(CHART, { existingSecret: { name: 'fleetgate-db' } })
  const c = r.docs.find((d) => d.kind === 'Pod')!.spec.containers[0]
  t.deepEqual(c.args, ['node', '-e', readFileSync(SCRIPT_FILE, 'utf8')])
  t.deepEqual((c.env as Array<{ name: string }>).map((e) => e.name).sort(), ['DEADLINE_SECONDS', 'MQTT_HOST', 'MQTT_PORT', 'MQTT_TRANSPORT', 'READYZ_URL'])
})

test.serial('a ready broker passes: /readyz 200, then CONNACK 5 (no credentials) over TCP', async (t) => {
  const refusals = async () => (await broker.app.metrics.connackRefusals.get()).values.filter((v) => v.labels.code === '5').reduce((n, v) => n + v.value, 0)
  const before = await refusals()
  const r = await runScript({ READYZ_URL: readyz(), MQTT_TRANSPORT: 'tcp', MQTT_HOST: '127.0.0.1', MQTT_PORT: String(broker.app.mqttPort) })
  t.is(r.code, 0, r.out)
  t.regex(r.out, /GET http:\/\/127\.0\.0\.1:\d+\/readyz: 200/)
  t.regex(r.out, /CONNACK return code 5 \(not authorized: expected, the test sends no credentials\)/)
  t.regex(r.out, /passed/)
  t.is(await refusals(), before + 1, 'the broker counted the refusal (the chart README says so)')
})

test.serial('over TLS (certificate not verified) and over WebSocket too', async (t) => {
  const tls = await runScript({ READYZ_URL: readyz(), MQTT_TRANSPORT: 'tls', MQTT_HOST: '127.0.0.1', MQTT_PORT: String(broker.app.mqttTlsPort) })
  t.is(tls.code, 0, tls.out)
  t.regex(tls.out, /MQTT tls:\/\/127\.0\.0\.1:\d+: CONNACK return code 5/)
  const ws = await runScript({ READYZ_URL: readyz(), MQTT_TRANSPORT: 'ws', MQTT_WS_URL: `ws://127.0.0.1:${broker.app.httpPort}/mqtt` })
  t.is(ws.code, 0, ws.out)
  t.regex(ws.out, /MQTT ws:\/\/127\.0\.0\.1:\d+\/mqtt: CONNACK return code 5/)
  const open = await runScript({ READYZ_URL: readyz(), MQTT_TRANSPORT: 'tcp-open', MQTT_HOST: '127.0.0.1', MQTT_PORT: String(broker.app.mqttTlsPort) })
  t.is(open.code, 0, open.out)
  t.regex(open.out, /accepts connections \(client certificates are required/)
})

async function listen (server: Server | ReturnType<typeof createTcpServer>): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return (server.address() as AddressInfo).port
}

test('a broker that is not ready fails the test, with /readyz\'s reason', async (t) => {
  const notReady = createHttpServer((_req, res) => { res.writeHead(503, { 'content-type': 'application/json' }); res.end('{"status":"not_ready","reason":"redis unreachable"}') })
  const port = await listen(notReady)
  try {
    const r = await runScript({ READYZ_URL: `http://127.0.0.1:${port}/readyz`, DEADLINE_SECONDS: '1', MQTT_TRANSPORT: 'tcp', MQTT_HOST: '127.0.0.1', MQTT_PORT: String(broker.app.mqttPort) })
    t.is(r.code, 1, r.out)
    t.regex(r.out, /FAILED: GET http:\/\/127\.0\.0\.1:\d+\/readyz: HTTP 503 \{"status":"not_ready","reason":"redis unreachable"\}/)
  } finally {
    notReady.close()
  }
})

test('no MQTT listener, or something that is not MQTT, fails the test', async (t) => {
  // A port nothing listens on: take one, then free it.
  const probe = createTcpServer()
  const closedPort = await listen(probe)
  await new Promise<void>((resolve) => probe.close(() => resolve()))
  const closed = await runScript({ READYZ_URL: readyz(), DEADLINE_SECONDS: '1', MQTT_TRANSPORT: 'tcp', MQTT_HOST: '127.0.0.1', MQTT_PORT: String(closedPort) })
  t.is(closed.code, 1, closed.out)
  t.regex(closed.out, /FAILED: MQTT CONNECT to tcp:\/\/127\.0\.0\.1:\d+: connect ECONNREFUSED/)

  const notMqtt = createTcpServer((socket) => { socket.end('HTTP/1.1 400 Bad Request\r\n\r\n') })
  const port = await listen(notMqtt)
  try {
    const r = await runScript({ READYZ_URL: readyz(), DEADLINE_SECONDS: '1', MQTT_TRANSPORT: 'tcp', MQTT_HOST: '127.0.0.1', MQTT_PORT: String(port) })
    t.is(r.code, 1, r.out)
    t.regex(r.out, /FAILED: MQTT CONNECT to tcp:\/\/127\.0\.0\.1:\d+: expected a CONNACK \(20 02 \.\.\.\), got 48545450/)
  } finally {
    notMqtt.close()
  }
})

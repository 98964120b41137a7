// Each listener logs one 'listening' line with the port it actually bound:
// with a port of 0 that line is the only place the port shows, and test
// harnesses (test/helpers/broker-process.ts, simulator/broker-under-test.ts)
// read it from a broker process's stdout. So it is written even when
// LOG_LEVEL hides info, except at 'silent'.
import test from 'ava'
import { execFileSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { createLogger } from '../../broker/logger.js'
import { startTestBroker } from '../helpers/broker.js'

function captureLogs (level: string) {
  const lines: Array<Record<string, unknown>> = []
  const stream = new Writable({ write (chunk, _enc, cb) { lines.push(JSON.parse(String(chunk)) as Record<string, unknown>); cb() } })
  return { lines, log: createLogger({ level, destination: stream }) }
}

const certs = mkdtempSync(join(tmpdir(), 'fleetgate-listening-'))
execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'server.key', '-out', 'server.pem', '-days', '1', '-subj', '/CN=localhost'], { cwd: certs, stdio: 'pipe' })
test.after.always(() => rmSync(certs, { recursive: true, force: true }))

test('at LOG_LEVEL warn, every listener on port 0 logs one "listening" line (at info) with the port it bound', async (t) => {
  const { lines, log } = captureLogs('warn')
  const broker = await startTestBroker({
    MQTT_PORT: 0,
    HTTP_PORT: 0,
    MQTT_TLS_ENABLED: true,
    MQTT_TLS_PORT: 0,
    MQTT_TLS_KEY_FILE: join(certs, 'server.key'),
    MQTT_TLS_CERT_FILE: join(certs, 'server.pem')
  }, undefined, { log })
  t.teardown(() => broker.close())
  const { app } = broker
  const listening = lines.filter((l) => l.msg === 'listening')
  t.deepEqual(listening.map((l) => ({ level: l.level, listener: l.listener, address: l.address, port: l.port })).sort((a, b) => String(a.listener).localeCompare(String(b.listener))), [
    { level: 30, listener: 'http', address: '127.0.0.1', port: app.httpPort },
    { level: 30, listener: 'mqtt-tcp', address: '127.0.0.1', port: app.mqttPort },
    { level: 30, listener: 'mqtt-tls', address: '127.0.0.1', port: app.mqttTlsPort },
    { level: 30, listener: 'mqtt-ws', address: '127.0.0.1', port: app.httpPort }
  ])
  t.true([app.httpPort, app.mqttPort, app.mqttTlsPort].every((p) => typeof p === 'number' && p > 0), 'real ports, not 0')
  t.is(listening.find((l) => l.listener === 'mqtt-ws')?.path, '/mqtt')
  t.deepEqual(lines.filter((l) => l.msg !== 'listening' && (l.level as number) < 40), [], 'nothing else below warn')
})

test('at LOG_LEVEL silent nothing is written', async (t) => {
  const { lines, log } = captureLogs('silent')
  const broker = await startTestBroker({}, undefined, { log })
  t.teardown(() => broker.close())
  t.deepEqual(lines, [])
})

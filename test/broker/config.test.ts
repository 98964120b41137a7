// Configuration errors as the user sees them (issue "Configuration errors",
// items 1 and 2): each bad variable on one line with the value as given and
// what is allowed; unknown variables in our prefixes named with the closest
// setting; both from `node broker/main.ts` itself, not only the module.
import test from 'ava'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { ConfigError, ConfigSchema, loadConfig, unknownSettings } from '../../broker/config.js'
import { createTestDatabase } from '../helpers/database.js'
import { startBrokerProcess } from '../helpers/broker-process.js'

const run = promisify(execFile)

function configError (env: Record<string, string>): string {
  try {
    loadConfig(env)
  } catch (err) {
    if (err instanceof ConfigError) return err.message
    throw err
  }
  throw new Error('the configuration was accepted')
}

test('a bad value is shown as given, with the allowed values, one line per variable, all at once', (t) => {
  t.is(configError({ MQTT_PORT: 'abc', LOG_LEVEL: 'verbose', HTTP_TRUST_PROXY: 'maybe', MQTT_TLS_CLIENT_CERT: 'yes', MQTT_WS_PATH: 'mqtt', TELEMETRY_MAX_DEPTH: '0' }), [
    'invalid configuration:',
    '  MQTT_PORT="abc": expected an integer from 0 to 65535',
    '  HTTP_TRUST_PROXY="maybe": expected true or false',
    '  LOG_LEVEL="verbose": expected one of: fatal, error, warn, info, debug, trace, silent',
    '  MQTT_TLS_CLIENT_CERT="yes": expected one of: off, optional, required',
    '  MQTT_WS_PATH="mqtt": expected a value matching ^/[A-Za-z0-9/_-]*$',
    '  TELEMETRY_MAX_DEPTH="0": expected an integer from 1 to 1000'
  ].join('\n'))
})

test('the allowed values come from the schema: every integer setting names its own range', (t) => {
  const env: Record<string, string> = {}
  const ranges: string[] = []
  for (const [key, schema] of Object.entries(ConfigSchema.properties) as Array<[string, { type?: string, minimum?: number, maximum?: number }]>) {
    if (schema.type !== 'integer') continue
    env[key] = '1.5x'
    ranges.push(`  ${key}="1.5x": expected an integer from ${schema.minimum} to ${schema.maximum}`)
  }
  t.true(ranges.length > 30)
  t.deepEqual(configError(env).split('\n').slice(1), ranges)
})

test('secrets are never echoed; their rule is still given', (t) => {
  const message = configError({ DATABASE_URL: 'mysql://fleet:hunter2-secret@db/fleet', REDIS_URL: 'http://:redis-secret@r:6379', ADMIN_TOKEN: 'tok-secret' })
  t.is(message, [
    'invalid configuration:',
    '  DATABASE_URL=[redacted]: expected a URL starting with postgres:// or postgresql://',
    '  REDIS_URL=[redacted]: expected a URL starting with redis:// or rediss://',
    '  ADMIN_TOKEN=[redacted]: expected at least 16 characters'
  ].join('\n'))
  t.notRegex(message, /secret/)
})

test('rules across settings are reported together', (t) => {
  t.is(configError({ DB_POOL_MAX: '3', INGEST_WRITERS: '3', BROKER_HEARTBEAT_MS: '5000', BROKER_EXPIRY_MS: '6000' }), [
    'invalid configuration:',
    '  BROKER_EXPIRY_MS: must exceed 2 × BROKER_HEARTBEAT_MS (10000), or a live replica\'s devices may be set offline (got 6000)',
    '  DB_POOL_MAX: must be greater than INGEST_WRITERS (3) so the control plane keeps a connection (got 3)'
  ].join('\n'))
})

test('an unknown variable in a fleetgate prefix, or close to a setting, is named with the closest setting', (t) => {
  const warnings = unknownSettings({ MQTT_PORTT: '1884', INGEST_BATCH_ROW: '100', MQQT_PORT: '1', log_level: 'debug', DATABSE_URL: 'postgres://x', MQTT_TLS_KEY: 'k.pem', DB_HOST: 'db', MQTT_PORT: '1883', PATH: '/usr/bin' })
  t.deepEqual(warnings.map((w) => w.message), [
    'unknown setting MQTT_PORTT (did you mean MQTT_PORT?)',
    'unknown setting INGEST_BATCH_ROW (did you mean INGEST_BATCH_ROWS?)',
    'unknown setting MQQT_PORT (did you mean MQTT_PORT?)',
    'unknown setting log_level (did you mean LOG_LEVEL?)',
    'unknown setting DATABSE_URL (did you mean DATABASE_URL?)',
    'unknown setting MQTT_TLS_KEY (did you mean MQTT_TLS_KEY_FILE?)',
    'unknown setting DB_HOST (ignored)'
  ])
  t.deepEqual(warnings[0], { setting: 'MQTT_PORTT', suggestion: 'MQTT_PORT', message: 'unknown setting MQTT_PORTT (did you mean MQTT_PORT?)' })
})

test('well-known variables of other software are not warned about', (t) => {
  const env: Record<string, string> = {}
  for (const name of [
    'HTTP_PROXY', 'HTTPS_PROXY', 'NO_PROXY', 'ALL_PROXY', 'http_proxy', 'https_proxy', 'no_proxy',
    'PATH', 'HOME', 'USER', 'SHELL', 'LANG', 'TERM', 'PWD', 'HOSTNAME', 'LOGNAME', 'TMPDIR', 'TZ', 'NODE_ENV', 'NODE_OPTIONS',
    'NODE_EXTRA_CA_CERTS', 'npm_lifecycle_event', 'npm_config_cache', 'INIT_CWD', 'PGHOST', 'PGPASSWORD', 'PGDATA', 'POSTGRES_PASSWORD',
    'XDG_DATA_HOME', 'DBUS_SESSION_BUS_ADDRESS', 'CI', 'GITHUB_ACTIONS', 'DEBIAN_FRONTEND', 'FLEETGATE_COMMIT',
    // The Helm chart sets it to build REDIS_URL.
    'REDIS_PASSWORD',
    // Kubernetes service links of services named kubernetes, redis, mqtt, broker.
    'KUBERNETES_SERVICE_HOST', 'KUBERNETES_SERVICE_PORT', 'KUBERNETES_SERVICE_PORT_HTTPS', 'KUBERNETES_PORT_443_TCP', 'KUBERNETES_PORT_443_TCP_ADDR',
    'REDIS_SERVICE_HOST', 'REDIS_PORT_6379_TCP_PORT', 'MQTT_SERVICE_PORT_MQTT', 'BROKER_PORT_1883_TCP_PROTO'
  ]) env[name] = 'x'
  env.REDIS_PORT = 'tcp://10.0.0.7:6379'
  env.KUBERNETES_PORT = 'tcp://10.0.0.1:443'
  t.deepEqual(unknownSettings(env), [])
})

test('the broker process exits 2 with the message on stderr, unknown settings included', async (t) => {
  const failed = await run(process.execPath, ['--import', 'tsx', 'broker/main.ts'], {
    // Only these variables: the expected stderr is exact.
    env: { PATH: process.env.PATH, MQTT_PORT: 'abc', LOG_LEVEL: 'verbose', MQTT_PORTT: '1884', DATABASE_URL: 'postgres://fleet:pw@127.0.0.1:1/none' }
  }).then(() => undefined, (e: { code: number, stderr: string }) => e)
  t.is(failed?.code, 2)
  t.is(failed?.stderr, [
    'fleetgate: invalid configuration:',
    '  MQTT_PORT="abc": expected an integer from 0 to 65535',
    '  LOG_LEVEL="verbose": expected one of: fatal, error, warn, info, debug, trace, silent',
    'fleetgate: unknown setting MQTT_PORTT (did you mean MQTT_PORT?)',
    ''
  ].join('\n'))
})

test('the broker logs an unknown setting at warn at start-up', async (t) => {
  const db = await createTestDatabase()
  const broker = await startBrokerProcess({ DATABASE_URL: db.url, LOG_LEVEL: 'warn', INGEST_BATCH_ROW: '100' })
  try {
    await broker.ready()
    const warning = broker.logTail().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.setting === 'INGEST_BATCH_ROW')
    t.like(warning, { level: 40, setting: 'INGEST_BATCH_ROW', suggestion: 'INGEST_BATCH_ROWS', msg: 'unknown setting INGEST_BATCH_ROW (did you mean INGEST_BATCH_ROWS?)' })
  } finally {
    await broker.kill('SIGTERM')
    await db.drop()
  }
})

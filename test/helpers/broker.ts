import mqtt, { type MqttClient, type IClientOptions } from 'mqtt'
import { loadConfig, type Config } from '../../broker/config.js'
import { createLogger } from '../../broker/logger.js'
import { startApp, type App, type AppOptions } from '../../broker/app.js'
import type { Logger } from '../../broker/logger.js'
import { createTestDatabase, type TestDatabase } from './database.js'

export const TEST_ADMIN_TOKEN = 'test-admin-token-0123456789'

export interface ApiResponse { status: number, body: any, headers: Record<string, unknown> } // eslint-disable-line @typescript-eslint/no-explicit-any

/** A REST call through fastify.inject (the full request pipeline, no socket). */
export async function api (app: App, method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE', url: string, body?: unknown, token: string | null = TEST_ADMIN_TOKEN, headers: Record<string, string> = {}): Promise<ApiResponse> {
  const res = await app.http.inject({
    method,
    url,
    headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...headers },
    ...(body !== undefined ? { payload: body as object } : {})
  })
  let parsed: unknown = res.body
  try { parsed = JSON.parse(res.body) } catch {}
  return { status: res.statusCode, body: parsed, headers: res.headers }
}

export interface TestBroker { app: App, db: TestDatabase, url: string, close (): Promise<void> }

/** A real broker on OS-assigned ports against its own cloned database. */
export async function startTestBroker (overrides: Partial<Config> = {}, db?: TestDatabase, options: AppOptions & { log?: Logger } = {}): Promise<TestBroker> {
  db ??= await createTestDatabase()
  const config = loadConfig({}, {
    DATABASE_URL: db.url,
    MQTT_HOST: '127.0.0.1',
    MQTT_PORT: 0,
    HTTP_HOST: '127.0.0.1',
    HTTP_PORT: 0,
    PRESENCE_FLUSH_MS: 50,
    ADMIN_TOKEN: TEST_ADMIN_TOKEN,
    // Tests connect from one address with many deliberate wrong passwords and
    // flood on purpose: these limits are exercised by test/broker/mqtt/limits.test.ts.
    MQTT_AUTH_FAILURE_MAX_DELAY_MS: 0,
    API_AUTH_FAILURES_PER_MINUTE: 1_000_000,
    DEVICE_PUBLISH_MESSAGES_PER_SECOND: 1_000_000,
    DEVICE_PUBLISH_BYTES_PER_SECOND: 1024 * 1024 * 1024,
    ...overrides
  })
  const log = options.log ?? createLogger({ level: process.env.TEST_LOG_LEVEL ?? 'silent', destination: process.stderr })
  const app = await startApp(config, log, { defaultMetrics: false, ...options })
  const database = db
  return {
    app,
    db: database,
    url: `mqtt://127.0.0.1:${app.mqttPort}`,
    async close () { await app.close() }
  }
}

export async function connectDevice (url: string, id: string, secret: string, opts: IClientOptions = {}): Promise<MqttClient> {
  return await mqtt.connectAsync(url, { clientId: id, username: id, password: secret, reconnectPeriod: 0, connectTimeout: 5000, ...opts })
}

/**
 * Resolves with the CONNACK return code (0 = accepted), or -1 when the
 * connection closed without a CONNACK (refused before MQTT: TLS handshake,
 * WebSocket upgrade, listener off).
 */
export async function connackCode (url: string, opts: IClientOptions): Promise<number> {
  const client = mqtt.connect(url, { reconnectPeriod: 0, connectTimeout: 5000, ...opts })
  return await new Promise((resolve) => {
    client.once('connect', () => { client.end(true); resolve(0) })
    client.once('error', (err: Error & { code?: number }) => { client.end(true); resolve(typeof err.code === 'number' ? err.code : -1) })
    client.once('close', () => { client.end(true); resolve(-1) })
  })
}

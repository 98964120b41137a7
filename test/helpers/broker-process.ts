// A broker in its own process (node broker/main.ts), for tests that kill it
// (SIGKILL) or run several replicas side by side as in production.
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { createInterface } from 'node:readline'
import { freePort } from '../../broker/embedded-postgres.js'
import { waitFor } from './wait.js'

export const PROCESS_ADMIN_TOKEN = 'process-test-admin-token-123'

export interface BrokerProcess {
  readonly mqttUrl: string
  readonly mqttPort: number
  readonly httpPort: number
  readonly proc: ChildProcess
  /** Resolves once /readyz answers 200. */
  ready (timeoutMs?: number): Promise<void>
  /** /readyz: undefined when ready, else the reason given. */
  notReadyReason (): Promise<string | undefined>
  api (method: string, path: string, body?: unknown, headers?: Record<string, string>): Promise<{ status: number, body: any }> // eslint-disable-line @typescript-eslint/no-explicit-any
  kill (signal?: NodeJS.Signals): Promise<void>
  /** The last log lines (pino JSON) the process wrote, for a failing test to show. */
  logTail (lines?: number): string
}

const LOG_TAIL_LINES = 400

export async function startBrokerProcess (env: Record<string, string>): Promise<BrokerProcess> {
  // Given ports are kept (a restart on the same address); otherwise free ones.
  const mqttPort = env.MQTT_PORT ? Number(env.MQTT_PORT) : await freePort()
  const httpPort = env.HTTP_PORT ? Number(env.HTTP_PORT) : await freePort()
  const proc = spawn(process.execPath, ['--import', 'tsx', 'broker/main.ts'], {
    env: {
      ...process.env,
      LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'warn',
      MQTT_HOST: '127.0.0.1',
      HTTP_HOST: '127.0.0.1',
      MQTT_PORT: String(mqttPort),
      HTTP_PORT: String(httpPort),
      ADMIN_TOKEN: PROCESS_ADMIN_TOKEN,
      MQTT_AUTH_FAILURE_MAX_DELAY_MS: '0',
      ...env
    },
    stdio: ['ignore', 'pipe', 'inherit']
  })
  // Always read (a full pipe would block the broker); keep only the tail.
  const tail: string[] = []
  createInterface({ input: proc.stdout!, crlfDelay: Infinity }).on('line', (line) => {
    if (line) tail.push(line)
    if (tail.length > LOG_TAIL_LINES * 2) tail.splice(0, tail.length - LOG_TAIL_LINES)
  })
  const base = `http://127.0.0.1:${httpPort}`
  const self: BrokerProcess = {
    mqttUrl: `mqtt://127.0.0.1:${mqttPort}`,
    mqttPort,
    httpPort,
    proc,
    async ready (timeoutMs = 30_000) {
      await waitFor(async () => {
        if (proc.exitCode !== null) throw new Error(`broker exited with ${proc.exitCode}`)
        return (await fetch(`${base}/readyz`)).ok
      }, { timeoutMs, what: `broker on ${httpPort} ready`, intervalMs: 50 })
    },
    async notReadyReason () {
      const res = await fetch(`${base}/readyz`)
      if (res.ok) return undefined
      const body = await res.json() as { reason?: string }
      return body.reason ?? String(res.status)
    },
    async api (method, path, body, headers = {}) {
      const res = await fetch(`${base}${path}`, {
        method,
        headers: { authorization: `Bearer ${PROCESS_ADMIN_TOKEN}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...headers },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {})
      })
      const text = await res.text()
      let parsed: unknown = text
      try { parsed = JSON.parse(text) } catch {}
      return { status: res.status, body: parsed }
    },
    logTail (lines = 100) {
      return tail.slice(-lines).join('\n')
    },
    async kill (signal = 'SIGTERM') {
      if (proc.exitCode !== null || proc.signalCode !== null) return
      proc.kill(signal)
      await once(proc, 'exit')
    }
  }
  return self
}

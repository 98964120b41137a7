// A redis-server child process on a loopback port, for the cluster benchmark
// and the cluster tests (Debian package redis-server). Its data (append-only
// file) lives in `dir`, so a restart keeps the shared MQTT sessions as a
// production Redis with persistence would.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { createConnection } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'

export interface RedisServer {
  readonly url: string
  readonly port: number
  readonly pid: number | undefined
  /** Stops the server with SIGKILL (an outage, not a shutdown). */
  kill (): Promise<void>
  /** Starts it again on the same port and data directory. */
  start (): Promise<void>
}

export function hasRedisServer (): boolean {
  return spawnSync('redis-server', ['--version'], { stdio: 'ignore' }).status === 0
}

/**
 * The process id of the Redis server answering on `port` (INFO server), or
 * undefined when none answers. A server that answers is ours only if the
 * id is our child's: another one on the port (the port was picked free,
 * then taken before redis-server bound it) answers a PING just as well.
 */
function serverPid (port: number): Promise<number | undefined> {
  return new Promise((resolve) => {
    const socket = createConnection({ host: '127.0.0.1', port })
    let answer = ''
    socket.setTimeout(500, () => { socket.destroy(); resolve(undefined) })
    socket.on('error', () => resolve(undefined))
    socket.on('connect', () => socket.write('INFO server\r\n'))
    socket.on('data', (d) => {
      answer += d.toString()
      const m = /process_id:(\d+)\r\n/.exec(answer)
      if (m || answer.startsWith('-')) { socket.destroy(); resolve(m ? Number(m[1]) : undefined) }
    })
  })
}

/** redis-server could not bind its port: another process holds it. A caller that picked the port may pick another. */
export class RedisPortTaken extends Error {
  readonly code = 'EADDRINUSE'
}

/**
 * `port`: a number, or a function that picks a free one (redis-server needs
 * it up front; it has no "any free port"). A picked port that another
 * process takes before redis-server binds it is picked again, up to 5 times.
 */
export async function startRedisServer (opts: { port: number | (() => Promise<number>), dir: string, fsyncAlways?: boolean }): Promise<RedisServer> {
  if (!hasRedisServer()) throw new Error('redis-server is not installed (Debian/Ubuntu: apt-get install redis-server)')
  const pick = opts.port
  let port = typeof pick === 'number' ? pick : await pick()
  let proc: ChildProcess | undefined
  async function start () {
    proc = spawn('redis-server', [
      '--port', String(port), '--bind', '127.0.0.1', '--dir', opts.dir, '--save', '',
      '--appendonly', 'yes', '--appendfsync', opts.fsyncAlways ? 'always' : 'everysec',
      '--daemonize', 'no', '--loglevel', 'warning', '--maxclients', '10000'
    ], { stdio: ['ignore', 'ignore', 'inherit'] })
    proc.on('error', () => {})
    const deadline = Date.now() + 10_000
    let answered: number | undefined
    while ((answered = await serverPid(port)) !== proc.pid) {
      if (proc.exitCode !== null) {
        if (answered !== undefined) throw new RedisPortTaken(`redis-server could not bind ${port}: another server (pid ${answered}) holds it`)
        throw new Error(`redis-server exited with ${proc.exitCode}`)
      }
      if (Date.now() > deadline) throw new Error(`redis-server on ${port} did not answer`)
      await sleep(50)
    }
  }
  for (let attempt = 1; ; attempt++) {
    try {
      await start()
      break
    } catch (err) {
      if (!(err instanceof RedisPortTaken) || typeof pick === 'number' || attempt >= 5) throw err
      port = await pick()
    }
  }
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    get pid () { return proc?.pid },
    async kill () {
      const p = proc
      proc = undefined
      if (!p || p.exitCode !== null || p.signalCode !== null) return
      p.kill('SIGKILL')
      await once(p, 'exit')
    },
    start
  }
}

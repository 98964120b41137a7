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

function ping (port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host: '127.0.0.1', port })
    let answer = ''
    socket.setTimeout(500, () => { socket.destroy(); resolve(false) })
    socket.on('error', () => resolve(false))
    socket.on('connect', () => socket.write('PING\r\n'))
    socket.on('data', (d) => { answer += d.toString(); if (answer.includes('\r\n')) { socket.destroy(); resolve(answer.startsWith('+PONG')) } })
  })
}

export async function startRedisServer (opts: { port: number, dir: string, fsyncAlways?: boolean }): Promise<RedisServer> {
  if (!hasRedisServer()) throw new Error('redis-server is not installed (Debian/Ubuntu: apt-get install redis-server)')
  let proc: ChildProcess | undefined
  async function start () {
    proc = spawn('redis-server', [
      '--port', String(opts.port), '--bind', '127.0.0.1', '--dir', opts.dir, '--save', '',
      '--appendonly', 'yes', '--appendfsync', opts.fsyncAlways ? 'always' : 'everysec',
      '--daemonize', 'no', '--loglevel', 'warning', '--maxclients', '10000'
    ], { stdio: ['ignore', 'ignore', 'inherit'] })
    proc.on('error', () => {})
    const deadline = Date.now() + 10_000
    while (!await ping(opts.port)) {
      if (proc.exitCode !== null) throw new Error(`redis-server exited with ${proc.exitCode}`)
      if (Date.now() > deadline) throw new Error(`redis-server on ${opts.port} did not answer`)
      await sleep(50)
    }
  }
  await start()
  return {
    url: `redis://127.0.0.1:${opts.port}`,
    port: opts.port,
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

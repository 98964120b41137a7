// A real redis-server for cluster tests, on a free loopback port, with its
// data (append-only file) in a temporary directory so a restart keeps the
// shared MQTT sessions, as a production Redis with persistence would.
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createConnection } from 'node:net'
import { freePort } from '../../broker/embedded-postgres.js'
import { waitFor } from './wait.js'

export interface TestRedis {
  readonly url: string
  readonly port: number
  /** Stops the server (SIGKILL: an outage, not a shutdown). */
  kill (): Promise<void>
  /** Starts it again on the same port and data directory. */
  start (): Promise<void>
  close (): Promise<void>
}

function pingable (port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host: '127.0.0.1', port })
    let answer = ''
    socket.setTimeout(500, () => { socket.destroy(); resolve(false) })
    socket.on('error', () => resolve(false))
    socket.on('connect', () => socket.write('PING\r\n'))
    socket.on('data', (d) => { answer += d.toString(); if (answer.includes('\r\n')) { socket.destroy(); resolve(answer.startsWith('+PONG')) } })
  })
}

export async function startTestRedis (): Promise<TestRedis> {
  const dir = await mkdtemp(join(tmpdir(), 'fleetgate-redis-'))
  const port = await freePort()
  let proc: ChildProcess | undefined
  async function start () {
    proc = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'yes', '--appendfsync', 'always', '--daemonize', 'no', '--loglevel', 'warning'], { stdio: ['ignore', 'ignore', 'inherit'] })
    proc.on('error', () => {})
    await waitFor(() => pingable(port), { timeoutMs: 10_000, what: `redis-server on ${port}` })
  }
  async function kill () {
    const p = proc
    proc = undefined
    if (!p || p.exitCode !== null) return
    p.kill('SIGKILL')
    await once(p, 'exit')
  }
  await start()
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    kill,
    start,
    async close () { await kill(); await rm(dir, { recursive: true, force: true }) }
  }
}

// The in-chart Redis as rendered — its redis.conf, its arguments with the
// password the Secret holds, its probes, and the broker's REDIS_URL — run on
// a real redis-server (the one test/run-tests.ts makes sure of). Only what a
// laptop cannot be is changed: the port, the data directory, and listening on
// loopback only.
import test from 'ava'
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Redis } from 'ioredis'
import { freePort } from '../../broker/embedded-postgres.js'
import { CHART, renderChart, type Doc } from '../helpers/helm.js'
import { waitFor } from '../helpers/wait.js'

interface Running { port: number, dir: string, proc: ChildProcess, docs: Doc[], stop (): Promise<void> }

/** Renders the chart with these redis values and starts redis-server the way the container would. */
async function startRendered (redis: Record<string, unknown>, password?: string): Promise<Running> {
  const r = await renderChart(CHART, { existingSecret: { name: 'fleetgate-db' }, redis: { enabled: true, ...redis } })
  if (r.code !== 0) throw new Error(r.stderr)
  const sts = r.docs.find((d) => d.kind === 'StatefulSet')!
  const c = sts.spec.template.spec.containers[0]
  const conf = r.docs.find((d) => d.kind === 'ConfigMap' && d.metadata.name.endsWith('-redis'))!.data['redis.conf'] as string
  const dir = await mkdtemp(join(tmpdir(), 'fleetgate-redis-'))
  // redis-server checks `dir` while it reads the file, before a --dir
  // argument could replace it: /data becomes the test's directory.
  if (!/^dir \/data$/m.test(conf)) throw new Error(`no "dir /data" in redis.conf:\n${conf}`)
  await writeFile(join(dir, 'redis.conf'), conf.replace(/^dir \/data$/m, `dir ${dir}`))
  // Kubernetes expands $(REDIS_PASSWORD) from the container's env (the Secret).
  const args = (c.args as string[]).map((a) => a === '$(REDIS_PASSWORD)' ? password! : a)
  if (args[0] !== 'redis-server' || args[1] !== '/etc/redis/redis.conf') throw new Error(`unexpected args ${args.join(' ')}`)
  // redis-server needs its port up front (no "any free port"): a picked
  // port that another process takes before redis-server binds it is picked again.
  let port = 0
  let proc: ChildProcess | undefined
  for (let attempt = 1; !proc; attempt++) {
    port = await freePort()
    const p = spawn('redis-server', [join(dir, 'redis.conf'), ...args.slice(2), '--port', String(port), '--bind', '127.0.0.1', '--daemonize', 'no'], { stdio: ['ignore', 'pipe', 'pipe'] })
    let log = ''
    p.stdout!.on('data', (d: Buffer) => { log += d.toString() })
    p.stderr!.on('data', (d: Buffer) => { log += d.toString() })
    await waitFor(() => /Ready to accept connections/.test(log) || p.exitCode !== null, { timeoutMs: 10_000, what: 'redis-server to start' })
    if (p.exitCode === null) proc = p
    else if (!/Address already in use/.test(log) || attempt >= 5) throw new Error(`redis-server refused the rendered config:\n${log}`)
  }
  return {
    port,
    dir,
    proc,
    docs: r.docs,
    async stop () {
      if (proc.exitCode === null) { proc.kill('SIGTERM'); await once(proc, 'exit') }
      await rm(dir, { recursive: true, force: true })
    }
  }
}

/** Runs a probe's exec command against the test port, with the container's REDISCLI_AUTH. */
function probe (command: string[], port: number, auth: string | undefined): number | null {
  const cmd = command.map((part) => part.replace('-p 6379', `-p ${port}`))
  const env: Record<string, string> = { PATH: process.env.PATH ?? '' }
  if (auth !== undefined) env.REDISCLI_AUTH = auth
  return spawnSync(cmd[0]!, cmd.slice(1), { env, timeout: 10_000 }).status
}

/** The broker's REDIS_URL with $(REDIS_PASSWORD) expanded, aimed at the test port. */
function brokerRedisUrl (docs: Doc[], port: number, password?: string): string {
  const env = docs.find((d) => d.kind === 'Deployment')!.spec.template.spec.containers[0].env as Doc[]
  const url = env.find((e) => e.name === 'REDIS_URL')!.value as string
  return url.replace('$(REDIS_PASSWORD)', password ?? '').replace(/@?fg-fleetgate-redis:6379$/, (m) => `${m.startsWith('@') ? '@' : ''}127.0.0.1:${port}`)
}

/** Sends one command the way the broker's client (ioredis) would; rejects with Redis's own refusal. */
async function ask (url: string, ...command: string[]): Promise<unknown> {
  // No ready check and no retries: a refusal (NOAUTH, or WRONGPASS for the
  // AUTH ioredis sends first) surfaces as itself, not as "connection closed".
  const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, enableOfflineQueue: false, enableReadyCheck: false })
  let refusal: Error | undefined
  client.on('error', (err: Error) => { refusal ??= err })
  try {
    await client.connect()
    return await client.call(command[0]!, ...command.slice(1))
  } catch (err) {
    throw refusal ?? err
  } finally {
    client.disconnect()
  }
}

test('with its password: the broker\'s REDIS_URL works, without it Redis refuses; sessions are never evicted, and written to disk', async (t) => {
  const password = 'Fleet-gate_test.pass~7'
  const redis = await startRendered({ auth: { password }, extraConfig: 'maxmemory 64mb' }, password)
  try {
    const url = brokerRedisUrl(redis.docs, redis.port, password)
    t.is(url, `redis://:${password}@127.0.0.1:${redis.port}`)
    t.is(await ask(url, 'PING'), 'PONG')
    t.deepEqual(await ask(url, 'CONFIG', 'GET', 'maxmemory-policy'), ['maxmemory-policy', 'noeviction'])
    t.deepEqual(await ask(url, 'CONFIG', 'GET', 'appendonly'), ['appendonly', 'yes'])
    t.deepEqual(await ask(url, 'CONFIG', 'GET', 'maxmemory'), ['maxmemory', String(64 * 1024 * 1024)], 'redis.extraConfig is applied')
    await t.throwsAsync(ask(`redis://127.0.0.1:${redis.port}`, 'GET', 'x'), { message: /NOAUTH/ })
    await t.throwsAsync(ask(`redis://:wrong@127.0.0.1:${redis.port}`, 'PING'), { message: /WRONGPASS/ })
  } finally {
    await redis.stop()
  }
})

test('the probes pass with the password and fail without it (redis-cli itself exits 0 on NOAUTH)', async (t) => {
  const password = 'probe-pass-1'
  const redis = await startRendered({ auth: { password } }, password)
  try {
    const c = redis.docs.find((d) => d.kind === 'StatefulSet')!.spec.template.spec.containers[0]
    for (const [name, p] of [['readiness', c.readinessProbe], ['liveness', c.livenessProbe]] as const) {
      t.is(probe(p.exec.command, redis.port, password), 0, `${name} with the password`)
      t.not(probe(p.exec.command, redis.port, 'wrong'), 0, `${name} with a wrong password`)
      t.not(probe(p.exec.command, redis.port, undefined), 0, `${name} without a password`)
    }
    // What the grep is for: redis-cli reports the refusal with exit code 0.
    t.is(spawnSync('redis-cli', ['-h', '127.0.0.1', '-p', String(redis.port), 'ping'], { env: { PATH: process.env.PATH ?? '' } }).status, 0)
    await redis.stop()
    t.not(probe(c.readinessProbe.exec.command, redis.port, password), 0, 'readiness fails when Redis is gone')
  } finally {
    await redis.stop()
  }
})

test('without a password (redis.auth.enabled=false): Redis starts with the rendered config and the URL has no password', async (t) => {
  const redis = await startRendered({ auth: { enabled: false } })
  try {
    const url = brokerRedisUrl(redis.docs, redis.port)
    t.is(url, `redis://127.0.0.1:${redis.port}`)
    t.is(await ask(url, 'PING'), 'PONG')
    t.deepEqual(await ask(url, 'CONFIG', 'GET', 'protected-mode'), ['protected-mode', 'no'])
  } finally {
    await redis.stop()
  }
})

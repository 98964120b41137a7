// A real redis-server for the cluster tests (simulator/redis-server.ts), on a
// free loopback port with its data in a temporary directory. redis-server
// needs its port up front (no "any free port"), hence freePort here.
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { freePort } from '../../broker/embedded-postgres.js'
import { startRedisServer, type RedisServer } from '../../simulator/redis-server.js'

export interface TestRedis extends RedisServer {
  close (): Promise<void>
}

export async function startTestRedis (): Promise<TestRedis> {
  const dir = await mkdtemp(join(tmpdir(), 'fleetgate-redis-'))
  // freePort, not a number: a port taken before redis-server binds it is picked again.
  const server = await startRedisServer({ port: freePort, dir, fsyncAlways: true })
  return {
    url: server.url,
    port: server.port,
    get pid () { return server.pid },
    kill: server.kill,
    start: server.start,
    async close () { await server.kill(); await rm(dir, { recursive: true, force: true }) }
  }
}

// redis-server needs its port up front, so the harness picks a free one; it
// may be taken before redis-server binds it. Then the start must not mistake
// the other server for its own (it answers a PING just as well): it fails
// with RedisPortTaken, or picks another port when it picked the first.
import test from 'ava'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { freePort } from '../../broker/embedded-postgres.js'
import { RedisPortTaken, startRedisServer, type RedisServer } from '../../simulator/redis-server.js'

test('a port taken by another Redis: a given port fails with RedisPortTaken, a picked one is picked again', async (t) => {
  const dirs = await Promise.all([1, 2].map(async () => await mkdtemp(join(tmpdir(), 'fleetgate-redis-port-'))))
  const servers: RedisServer[] = []
  t.teardown(async () => {
    for (const s of servers) await s.kill()
    for (const d of dirs) await rm(d, { recursive: true, force: true })
  })
  const first = await startRedisServer({ port: freePort, dir: dirs[0]! })
  servers.push(first)

  const err = await t.throwsAsync(startRedisServer({ port: first.port, dir: dirs[1]! }))
  t.true(err instanceof RedisPortTaken, String(err))

  const picks: number[] = []
  const second = await startRedisServer({ port: async () => { const p = picks.length === 0 ? first.port : await freePort(); picks.push(p); return p }, dir: dirs[1]! })
  servers.push(second)
  t.is(picks.length, 2, 'the taken port, then another')
  t.not(second.port, first.port)
  t.not(second.pid, first.pid)
})

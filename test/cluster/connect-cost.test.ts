// Issue 15: what a device's CONNECT and SUBSCRIBE cost in Redis in cluster
// mode (cluster-backend.ts). They used to cost 9 commands each (a SUBSCRIBE
// per device filter, a PUBLISH per announcement, will and retained look-ups
// that could find nothing), which capped three replicas at a few hundred
// CONNECTs/s. Counted from the server's own INFO commandstats.
import test from 'ava'
import mqtt, { type MqttClient } from 'mqtt'
import { Redis } from 'ioredis'
import { createTestDatabase, type TestDatabase } from '../helpers/database.js'
import { startTestRedis, type TestRedis } from '../helpers/redis.js'
import { startBrokerProcess, type BrokerProcess } from '../helpers/broker-process.js'
import { waitFor } from '../helpers/wait.js'

let db: TestDatabase
let redis: TestRedis
let a: BrokerProcess
let b: BrokerProcess
let stats: Redis
const clients: MqttClient[] = []

test.before(async () => {
  db = await createTestDatabase()
  redis = await startTestRedis()
  stats = new Redis(redis.url)
  const env = { DATABASE_URL: db.url, REDIS_URL: redis.url, PRESENCE_FLUSH_MS: '50' }
  ;[a, b] = await Promise.all([startBrokerProcess(env), startBrokerProcess(env)])
  await Promise.all([a.ready(), b.ready()])
})

test.after.always(async () => {
  for (const c of clients) c.end(true)
  await Promise.all([a?.kill(), b?.kill()])
  stats?.disconnect()
  await redis?.close()
})

async function commandCalls (): Promise<Record<string, number>> {
  const calls: Record<string, number> = {}
  for (const m of (await stats.info('commandstats')).matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) calls[m[1]!] = Number(m[2])
  return calls
}

function diff (before: Record<string, number>, after: Record<string, number>): Record<string, number> {
  const d: Record<string, number> = {}
  for (const [k, v] of Object.entries(after)) if (v - (before[k] ?? 0) > 0) d[k] = v - (before[k] ?? 0)
  return d
}

test.serial('a clean-session device connecting and subscribing costs one Redis look-up and at most one announcement; its deliveries none', async (t) => {
  const n = 20
  const secrets = await Promise.all(Array.from({ length: n }, async (_, i) => {
    const res = await a.api('POST', '/v1/devices', { id: `cost-${i}`, labels: { cost: 'yes' } })
    return (res.body as { secret: string }).secret
  }))
  const before = await commandCalls()
  const devices = await Promise.all(secrets.map(async (secret, i) => {
    const id = `cost-${i}`
    const client = await mqtt.connectAsync((i % 2 === 0 ? a : b).mqttUrl, { clientId: id, username: id, password: secret, clean: true, reconnectPeriod: 0 })
    clients.push(client)
    const configs: unknown[] = []
    client.on('message', (topic, payload) => { if (topic === `devices/${id}/config`) configs.push(JSON.parse(payload.toString())) })
    await client.subscribeAsync([`devices/${id}/config`, `devices/${id}/commands/+`], { qos: 1 })
    return { client, configs }
  }))
  const connecting = diff(before, await commandCalls())
  t.log('Redis commands for', n, 'CONNECT + SUBSCRIBE:', JSON.stringify(connecting))
  const count = (d: Record<string, number>, ...names: string[]) => names.reduce((s, k) => s + (d[k] ?? 0), 0)
  t.is(count(connecting, 'subscribe', 'psubscribe'), 0, 'no Redis subscription per device filter')
  t.is(count(connecting, 'get', 'lrem', 'del', 'hget', 'lrange'), 0, 'no will, retained or queue look-up that cannot find anything')
  t.is(connecting.hgetall, n, 'one stored-session look-up per Clean Start CONNECT')
  t.true(count(connecting, 'publish') <= n, `announcements batched: ${count(connecting, 'publish')} PUBLISH for ${n} CONNECTs`)

  // A rollout from replica A reaches the devices on both replicas without a
  // PUBLISH per device: each replica delivers to its own devices in process.
  const beforeRollout = await commandCalls()
  const rollout = await a.api('POST', '/v1/rollouts', { selector: 'cost=yes', config: { interval: 7 } })
  t.is(rollout.status, 201)
  await waitFor(() => devices.every((d) => d.configs.length > 0), { what: 'the rollout config on every device' })
  const rolling = diff(beforeRollout, await commandCalls())
  t.log('Redis commands for a rollout to', n, 'devices:', JSON.stringify(rolling))
  t.true(count(rolling, 'publish') < n, `${count(rolling, 'publish')} PUBLISH for ${n} deliveries (dispatch requests and replies only)`)
})

// Session Expiry in cluster mode (issue 12, broker/mqtt/session-expiry.ts):
// two replicas on one PostgreSQL and one real redis-server. A session that
// ends on replica A and is resumed on replica B must not be expired by A's
// timer; a 3.1.1 persistent session likewise.
import test from 'ava'
import mqtt, { type IClientOptions } from 'mqtt'
import { startTestBroker, type TestBroker } from '../../helpers/broker.js'
import { createTestDatabase, type TestDatabase } from '../../helpers/database.js'
import { startTestRedis, type TestRedis } from '../../helpers/redis.js'

let db: TestDatabase
let redis: TestRedis
let a: TestBroker
let b: TestBroker

test.before(async () => {
  db = await createTestDatabase()
  redis = await startTestRedis()
  const env = { REDIS_URL: redis.url, MQTT_ALLOW_ANONYMOUS: true, MQTT_SESSION_EXPIRY_DEFAULT_SECONDS: 2 }
  a = await startTestBroker(env, db)
  b = await startTestBroker(env, db)
})

test.after.always(async () => {
  await a?.close()
  await b?.close()
  await redis?.close()
  await db?.drop()
})

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

async function sessionPresent (url: string, opts: IClientOptions): Promise<{ present: boolean, end: () => Promise<void> }> {
  const c = mqtt.connect(url, { reconnectPeriod: 0, ...opts })
  const connack = await new Promise<{ sessionPresent: boolean }>((resolve, reject) => { c.once('connect', resolve); c.once('error', reject) })
  return { present: connack.sessionPresent, end: async () => { await c.endAsync() } }
}

for (const [name, opts] of [
  ['a v5 session (Session Expiry Interval 2 s)', { protocolVersion: 5, clean: false, properties: { sessionExpiryInterval: 2 } }],
  ['a 3.1.1 persistent session (MQTT_SESSION_EXPIRY_DEFAULT_SECONDS 2 s)', { protocolVersion: 4, clean: false }]
] as const) {
  test.serial(`${name} resumed on another replica is not expired by the first one's timer`, async (t) => {
    const clientId = `cl-sess-v${opts.protocolVersion}`
    const first = await mqtt.connectAsync(a.url, { ...opts, clientId, reconnectPeriod: 0 })
    await first.subscribeAsync(`dev/cl-sess/${clientId}`, { qos: 1 })
    await first.endAsync() // A times the session from now
    await sleep(300)
    const onB = await sessionPresent(b.url, { ...opts, clientId })
    t.true(onB.present, 'resumed on B')
    await sleep(3000) // past A's expiry
    await onB.end()
    const again = await sessionPresent(b.url, { ...opts, clientId })
    t.true(again.present, 'the session B resumed is still stored (A did not wipe it)')
    await again.end()
  })
}

// GET /v1/events across two replicas (issue 13, cluster mode): two brokers
// on one PostgreSQL and one real redis-server; events produced on one
// replica reach streams served by the other, and telemetry costs nothing on
// the bus while no stream anywhere wants it.
import test from 'ava'
import { Redis } from 'ioredis'
import { connectDevice, startTestBroker, type TestBroker } from '../helpers/broker.js'
import { createTestDatabase, type TestDatabase } from '../helpers/database.js'
import { startTestRedis, type TestRedis } from '../helpers/redis.js'
import { openEvents, type SseClient } from '../helpers/sse.js'
import { waitFor } from '../helpers/wait.js'
import { SYSTEM_ACTOR, writeChanges } from '../../devices/change-recorder.js'
import { withTransaction } from '../../devices/transaction.js'

let db: TestDatabase
let redis: TestRedis
let a: TestBroker
let b: TestBroker
let spy: Redis
/** Messages seen on the event bus, by channel (a pattern subscription: not counted by PUBSUB NUMSUB). */
const bus: Array<{ channel: string, message: string }> = []
const open: SseClient[] = []

test.before(async () => {
  db = await createTestDatabase()
  redis = await startTestRedis()
  const env = { REDIS_URL: redis.url, INGEST_FLUSH_MS: 5 }
  a = await startTestBroker(env, db)
  b = await startTestBroker(env, db)
  spy = new Redis(redis.url)
  spy.on('pmessage', (_p: string, channel: string, message: string) => bus.push({ channel, message }))
  await spy.psubscribe('fleetgate:events:*')
})

test.afterEach.always(() => { for (const c of open.splice(0)) c.close() })

test.after.always(async () => {
  spy?.disconnect()
  await a?.close()
  await b?.close()
  await redis?.close()
  await db?.drop()
})

test.serial('events produced on replica A reach a stream served by replica B', async (t) => {
  const creds = await a.app.devices.create({ id: 'cl-ev-1' })
  const s = await openEvents(b.app.httpPort, 'deviceIds=cl-ev-1')
  open.push(s)
  t.is(s.status, 200)
  // A learns that B wants telemetry (B announces its subscription).
  await waitFor(() => a.app.events.wants('telemetry'), { what: 'replica A sees that B wants telemetry' })
  const device = await connectDevice(a.url, creds.id, creds.secret)
  await device.publishAsync(`devices/${creds.id}/telemetry`, JSON.stringify([{ n: 1 }, { n: 2 }, { n: 3 }]), { qos: 1 })
  await device.publishAsync(`devices/${creds.id}/telemetry`, '{oops', { qos: 1 })
  // A stored event written and published on A.
  const [stored] = await withTransaction(a.app.pool, (c) => writeChanges(c, SYSTEM_ACTOR, [], [{ kind: 'device', type: 'updated', deviceId: 'cl-ev-1', data: { on: 'a' } }]))
  a.app.events.publish([stored!])
  await device.endAsync()
  await s.waitFor((c) => {
    const kinds = c.events().map((e) => `${e.kind}/${e.type}`)
    return kinds.includes('presence/connected') && kinds.filter((k) => k === 'telemetry/stored').length === 3 &&
      kinds.includes('dead_letter/invalid_json') && kinds.includes('device/updated') && kinds.includes('presence/disconnected')
  }, 'every kind from replica A on replica B')
  const events = s.events()
  t.deepEqual(events.filter((e) => e.kind === 'telemetry').map((e) => e.data.reading.n), [1, 2, 3])
  t.is(events.find((e) => e.kind === 'device')!.id, stored!.id, 'stored events keep their id across replicas')
  t.is(s.frames.find((f) => f.event === 'device')!.id, stored!.id)
  t.is(events.filter((e) => e.kind === 'device').length, 1, 'delivered once')
  // The three readings of one committed batch crossed the bus as one message.
  const telemetryMessages = bus.filter((m) => m.channel === 'fleetgate:events:telemetry')
  t.is(telemetryMessages.length, 1)
  t.is(telemetryMessages[0]!.message.split('\n').length, 1 + 3)
})

test.serial('telemetry is not published on the bus while no stream anywhere wants it', async (t) => {
  // No stream open (the previous test's is closed): nobody wants telemetry, on either replica.
  await waitFor(() => !a.app.events.wants('telemetry') && !b.app.events.wants('telemetry'), { what: 'no replica wants telemetry' })
  const presenceOnly = await openEvents(b.app.httpPort, 'kinds=presence')
  open.push(presenceOnly)
  await waitFor(() => a.app.events.wants('presence'), { what: 'A sees that B wants presence' })
  t.false(a.app.events.wants('telemetry'))
  bus.length = 0
  const creds = await a.app.devices.create({ id: 'cl-ev-2' })
  const device = await connectDevice(a.url, creds.id, creds.secret)
  for (let i = 0; i < 20; i++) await device.publishAsync(`devices/${creds.id}/telemetry`, JSON.stringify({ i }), { qos: 1 })
  await presenceOnly.waitFor((c) => c.events().some((e) => e.deviceId === 'cl-ev-2'), 'the presence event (the bus works)')
  await device.endAsync()
  await presenceOnly.waitFor((c) => c.events().some((e) => e.deviceId === 'cl-ev-2' && e.type === 'disconnected'), 'disconnected')
  t.deepEqual(bus.filter((m) => m.channel === 'fleetgate:events:telemetry'), [], 'no telemetry on the bus')
  t.true(bus.some((m) => m.channel === 'fleetgate:events:presence'))

  // A telemetry stream on B: A publishes telemetry again; closed, A stops again.
  const tel = await openEvents(b.app.httpPort, 'kinds=telemetry')
  open.push(tel)
  await waitFor(() => a.app.events.wants('telemetry'), { what: 'A sees the telemetry stream' })
  const again = await connectDevice(a.url, creds.id, creds.secret)
  await again.publishAsync(`devices/${creds.id}/telemetry`, JSON.stringify({ i: 99 }), { qos: 1 })
  await tel.waitFor((c) => c.events().some((e) => e.data.reading.i === 99), 'telemetry from A on B')
  tel.close()
  await waitFor(() => !a.app.events.wants('telemetry'), { what: 'A no longer wants telemetry once the stream closed' })
  bus.length = 0
  await again.publishAsync(`devices/${creds.id}/telemetry`, JSON.stringify({ i: 100 }), { qos: 1 })
  await again.endAsync()
  await presenceOnly.waitFor((c) => c.events().filter((e) => e.deviceId === 'cl-ev-2' && e.type === 'disconnected').length >= 2, 'the second disconnect')
  t.deepEqual(bus.filter((m) => m.channel === 'fleetgate:events:telemetry'), [])
})

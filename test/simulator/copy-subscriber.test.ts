// The benchmark's durable-pipeline subscriber (simulator/copy-subscriber.ts):
// what it takes from a plain MQTT broker ends up in the real telemetry table,
// a redelivered batch does not fail the COPY, and a message that is not
// telemetry is counted, not stored.
import test from 'ava'
import { createServer, type AddressInfo } from 'node:net'
import { Aedes } from 'aedes'
import mqtt from 'mqtt'
import pg from 'pg'
import { startCopySubscriber } from '../../simulator/copy-subscriber.js'
import { createTestDatabase } from '../helpers/database.js'
import { waitFor } from '../helpers/wait.js'

test('readings published to a plain broker are COPYed into the telemetry table, redeliveries included', async (t) => {
  const db = await createTestDatabase()
  const aedes = await Aedes.createBroker()
  const server = createServer(aedes.handle)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const url = `mqtt://127.0.0.1:${(server.address() as AddressInfo).port}`
  const sql = new pg.Client({ connectionString: db.url })
  await sql.connect()
  let subscribed = false
  const sub = startCopySubscriber({ broker: url, databaseUrl: db.url, share: '', topic: 'devices/+/telemetry', clientId: 'copy-test', batchRows: 7, flushMs: 20, maxBufferRows: 10, onSubscribed: () => { subscribed = true }, log: () => {} })
  const publisher = await mqtt.connectAsync(url, { clientId: 'gateway-test' })
  t.teardown(async () => {
    await publisher.endAsync().catch(() => {})
    await sub.stop().catch(() => {})
    await sql.end().catch(() => {})
    await new Promise<void>((resolve) => aedes.close(() => resolve()))
    server.close()
    await db.drop()
  })
  await waitFor(() => subscribed, { what: 'subscription' })

  const now = Date.now()
  // 12 messages of 5 readings each (more than the buffer holds: the PUBACKs wait for flushes).
  for (let m = 0; m < 12; m++) {
    const readings = Array.from({ length: 5 }, (_, k) => ({ ts: now - 1000 + m * 5 + k, seq: m * 5 + k, note: 'tab\there, back\\slash' }))
    await publisher.publishAsync(`devices/gw-${m % 3}/telemetry`, JSON.stringify(readings), { qos: 1 })
  }
  await publisher.publishAsync('devices/gw-0/telemetry', 'not json', { qos: 1 })
  await publisher.publishAsync('devices/gw-1/telemetry', JSON.stringify({ temp: 20.5 }), { qos: 1 })
  await waitFor(() => sub.counters.committed >= 61, { what: 'rows committed', timeoutMs: 15_000 })
  const count = async () => (await sql.query<{ n: number }>('SELECT count(*)::int AS n FROM telemetry')).rows[0]!.n
  t.is(await count(), 61)
  t.is(sub.counters.invalid, 1)
  const row = (await sql.query<{ device_id: string, payload: { seq: number, note: string }, ts: Date }>("SELECT device_id, payload, ts FROM telemetry WHERE payload->>'seq' = '7'")).rows[0]!
  t.is(row.device_id, 'gw-1')
  t.is(row.payload.note, 'tab\there, back\\slash')
  t.is(row.ts.getTime(), now - 1000 + 7)

  // The same message again (as after a reconnect): the COPY would violate the key; the batch goes through the staging table.
  const again = Array.from({ length: 5 }, (_, k) => ({ ts: now - 1000 + k, seq: k, note: 'tab\there, back\\slash' }))
  await publisher.publishAsync('devices/gw-0/telemetry', JSON.stringify(again), { qos: 1 })
  await publisher.publishAsync('devices/gw-0/telemetry', JSON.stringify({ ts: now, seq: 1000 }), { qos: 1 })
  await waitFor(() => sub.counters.committed >= 67, { what: 'the redelivered batch', timeoutMs: 15_000 })
  t.is(await count(), 62)
  t.is(sub.counters.rejected, 0)
})

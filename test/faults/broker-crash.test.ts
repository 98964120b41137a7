// Issue 7, fault test 2: the broker is killed (SIGKILL) while devices publish
// at QoS 1, then restarted; devices reconnect and retransmit. Every reading
// acknowledged before the kill is stored, and none twice.
import test from 'ava'
import { createTestDatabase } from '../helpers/database.js'
import { startBrokerProcess } from '../helpers/broker-process.js'
import { startQos1Load, storedReadings, type Qos1Load } from '../helpers/qos1-load.js'
import { waitFor } from '../helpers/wait.js'

test('SIGKILL under QoS 1 load loses no acknowledged reading and stores none twice', async (t) => {
  const db = await createTestDatabase()
  let broker = await startBrokerProcess({ DATABASE_URL: db.url })
  let load: Qos1Load | undefined
  t.teardown(async () => { await load?.stop(); await broker.kill('SIGKILL'); await db.drop() })
  await broker.ready()
  const devices = []
  for (let d = 0; d < 5; d++) devices.push((await broker.api('POST', '/v1/devices', { id: `crash-${d}` })).body as { id: string, secret: string })
  const running = await startQos1Load(broker.mqttUrl, devices, { window: 10 })
  load = running

  await waitFor(() => running.acked.size >= 1000, { timeoutMs: 30_000, what: '1000 acknowledged' })
  await broker.kill('SIGKILL')
  const ackedBeforeKill = new Set(running.acked)
  // The same ports: the devices reconnect to where they were.
  broker = await startBrokerProcess({ DATABASE_URL: db.url, MQTT_PORT: String(broker.mqttPort), HTTP_PORT: String(broker.httpPort) })
  await broker.ready()
  await waitFor(() => running.acked.size >= ackedBeforeKill.size + 500, { timeoutMs: 30_000, what: 'publishing resumed after the restart' })
  await running.stop()
  load = undefined

  const { copies: stored, duplicated } = await storedReadings(db.url)
  t.deepEqual([...ackedBeforeKill].filter((k) => !stored.has(k)), [], 'every reading acknowledged before the kill is stored')
  t.deepEqual([...running.acked].filter((k) => !stored.has(k)), [], 'and every one acknowledged after it')
  t.deepEqual(duplicated, [], 'none stored twice')
  await broker.kill('SIGTERM')
  t.is(broker.proc.exitCode, 0, 'the restarted broker shuts down cleanly')
})

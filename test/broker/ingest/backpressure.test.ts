// DESIGN.md rule 2: when the database cannot keep up (here: it is blocked by
// a lock), the queue stays within its capacity, the broker stops reading the
// publishers' sockets and TCP pushes back; nothing is dropped, and once the
// database is back every message is stored and acknowledged.
import test from 'ava'
import { T0 } from '../../helpers/time.js'
import { connect, type Socket } from 'node:net'
import pg from 'pg'
import mqttPacket from 'mqtt-packet'
import { startTestBroker, type TestBroker } from '../../helpers/broker.js'
import { waitFor } from '../../helpers/wait.js'

const CAPACITY = 200
let broker: TestBroker
let db: pg.Pool
test.before(async () => {
  broker = await startTestBroker({ INGEST_QUEUE_ROWS: CAPACITY, INGEST_BATCH_ROWS: 50, INGEST_WRITERS: 2 })
  db = new pg.Pool({ connectionString: broker.db.url, max: 2 })
})
test.after.always(async () => { await db?.end(); await broker?.close(); await broker?.db.drop() })

interface RawPublisher { socket: Socket, pubacks: () => number }

/** Connects a device over a raw socket and writes `count` QoS 1 publishes at once (each with `fillerBytes` of padding). */
async function rawPublisher (id: string, count: number, fillerBytes = 1000): Promise<RawPublisher> {
  const dev = await broker.app.devices.create({ id })
  const socket = connect(broker.app.mqttPort, '127.0.0.1')
  socket.on('error', () => {})
  const parser = mqttPacket.parser()
  let pubacks = 0
  let connack: number | undefined
  parser.on('packet', (p) => {
    if (p.cmd === 'puback') pubacks++
    if (p.cmd === 'connack') connack = p.returnCode
  })
  socket.on('data', (d) => parser.parse(d))
  await new Promise<void>((resolve) => socket.once('connect', () => resolve()))
  // aedes bounds what it buffers before CONNACK (42 packets): wait for it.
  socket.write(mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId: id, username: id, password: Buffer.from(dev.secret), clean: true, keepalive: 0 }))
  await waitFor(() => connack !== undefined, { what: 'CONNACK' })
  if (connack !== 0) throw new Error(`CONNACK ${connack}`)
  const filler = 'x'.repeat(fillerBytes)
  const chunks: Buffer[] = []
  for (let i = 0; i < count; i++) {
    chunks.push(mqttPacket.generate({
      cmd: 'publish',
      topic: `devices/${id}/telemetry`,
      qos: 1,
      messageId: (i % 65000) + 1,
      dup: false,
      retain: false,
      payload: Buffer.from(JSON.stringify({ ts: T0 - i, i, filler }))
    }))
  }
  socket.write(Buffer.concat(chunks))
  return { socket, pubacks: () => pubacks }
}

async function received (): Promise<number> {
  return (await broker.app.metrics.registry.getSingleMetric('fleetgate_mqtt_publishes_received_total')!.get()).values.reduce((a, v) => a + v.value, 0)
}

test.serial('a blocked database holds publishers back instead of buffering, and loses nothing', async (t) => {
  const PUBLISHERS = 5
  // ~10 MB per publisher: more than loopback's kernel buffers hold.
  const EACH = 10_000
  const TOTAL = PUBLISHERS * EACH
  const locker = await db.connect()
  await locker.query('BEGIN')
  await locker.query('LOCK TABLE telemetry IN ACCESS EXCLUSIVE MODE')

  let maxQueued = 0
  let maxWaiting = 0
  const sampler = setInterval(() => {
    maxQueued = Math.max(maxQueued, broker.app.queue.rows)
    maxWaiting = Math.max(maxWaiting, broker.app.queue.waiting)
  }, 2)
  const publishers: RawPublisher[] = []
  t.teardown(() => { clearInterval(sampler); for (const p of publishers) p.socket.destroy() })
  try {
    for (let p = 0; p < PUBLISHERS; p++) publishers.push(await rawPublisher(`bp-${p}`, EACH))
    // The queue fills and publishers wait…
    await waitFor(() => broker.app.queue.waiting > 0, { what: 'publishers to be held' })
    // …and the kernel buffers between us fill up: the broker stopped reading.
    await waitFor(() => publishers.every((p) => p.socket.writableLength > 0), { what: 'TCP backpressure on every sender' })
    const got = await received()
    t.true(got < TOTAL / 4, `broker read ${got} of ${TOTAL} messages while the database was blocked`)
    t.is(publishers.reduce((a, p) => a + p.pubacks(), 0), 0, 'nothing acknowledged while nothing is committed')
    t.true(maxQueued <= CAPACITY, `queue held ${maxQueued} rows, capacity ${CAPACITY}`)
  } finally {
    await locker.query('COMMIT')
    locker.release()
  }

  await waitFor(() => publishers.every((p) => p.pubacks() === EACH), { timeoutMs: 60_000, what: `all ${TOTAL} PUBACKs` })
  clearInterval(sampler)
  const { rows } = await db.query<{ n: string }>("SELECT count(*) AS n FROM telemetry WHERE device_id LIKE 'bp-%'")
  t.is(Number(rows[0]!.n), TOTAL)
  t.true(maxQueued <= CAPACITY, `queue held ${maxQueued} rows, capacity ${CAPACITY}`)
  // At most one socket read's worth of packets per connection may wait.
  t.true(maxWaiting < PUBLISHERS * 1000, `at most ${maxWaiting} publishers waited`)
  const held = (await broker.app.metrics.registry.getSingleMetric('fleetgate_ingest_backpressure_seconds_total')!.get()).values[0]!.value
  t.true(held > 0, 'backpressure time is counted')
})

// Issue 15, target 4: aedes parses every packet of what it reads from a
// socket before answering any, so while the queue is full a device with many
// small PUBLISHes in flight would have a whole socket read (~1,000 of them
// here) held as parsed objects. While publishers wait, a socket is parsed a
// slice (4 KiB) at a time: each connection holds about one slice's worth.
test.serial('while the queue is full, each connection has only a slice of its socket parsed and waiting, and nothing is lost', async (t) => {
  const LATER = 4
  const EACH = 2_000
  const locker = await db.connect()
  await locker.query('BEGIN')
  await locker.query('LOCK TABLE telemetry IN ACCESS EXCLUSIVE MODE')
  const publishers: RawPublisher[] = []
  t.teardown(() => { for (const p of publishers) p.socket.destroy() })
  const first = CAPACITY * 3
  try {
    // The first device fills the queue…
    publishers.push(await rawPublisher('slice-0', first, 0))
    await waitFor(() => broker.app.queue.waiting > 0, { what: 'publishers to be held' })
    await waitFor(async () => (await received()) >= first, { what: 'the first device read whole' })
    const before = await received()
    // …then the others write 2,000 small PUBLISHes each (~60 bytes: ~120 KB,
    // all of it in the broker's socket buffers).
    for (let p = 1; p <= LATER; p++) publishers.push(await rawPublisher(`slice-${p}`, EACH, 0))
    await new Promise((resolve) => setTimeout(resolve, 1000))
    const parsed = (await received()) - before
    t.true(parsed > 0, 'the later devices\' first slices were parsed')
    // ~68 packets per 4 KiB slice, plus the one a slice ends inside.
    t.true(parsed <= LATER * 80, `${parsed} PUBLISHes of the later devices parsed while the queue was full (a whole read would be ~${LATER * 1000})`)
    t.is(publishers.reduce((a, p) => a + p.pubacks(), 0), 0, 'nothing acknowledged while nothing is committed')
  } finally {
    await locker.query('COMMIT')
    locker.release()
  }
  await waitFor(() => publishers.every((p, i) => p.pubacks() === (i === 0 ? first : EACH)), { timeoutMs: 60_000, what: 'every PUBACK' })
  const { rows } = await db.query<{ n: string }>("SELECT count(*) AS n FROM telemetry WHERE device_id LIKE 'slice-%'")
  t.is(Number(rows[0]!.n), first + LATER * EACH)
})

// The pipeline a user would otherwise build (issue 15): a plain MQTT broker
// (Mosquitto) that acknowledges devices on receipt, plus subscriber services
// like this one that write the readings into PostgreSQL in batches with COPY.
// bench-pipeline.ts runs two of them against Mosquitto and compares the whole
// with fleetgate. It is a small program of its own, not a part of fleetgate:
// it knows only the public contract (devices/{id}/telemetry, a reading or an
// array of readings, each with an optional `ts`) and the telemetry table.
//
// What it does, as a service of this kind has to:
//   - subscribes with MQTT 5 to a shared subscription ($share/{group}/…), so
//     that several instances split the messages, QoS 1, on a clean session;
//     mqtt.js reconnects (every second) and the subscription is made again on
//     each CONNACK;
//   - turns each message into rows (device id from the topic, the reading's
//     own `ts` or the receive time, a 64-bit digest of the reading for the
//     table's dedup key), kept as COPY text lines in one buffer;
//   - flushes the buffer with COPY telemetry FROM STDIN once it holds
//     --batch-rows rows or its oldest row is --flush-ms old, one flush at a
//     time over its one connection;
//   - bounds the buffer: past --max-buffer-rows it stops reading from the
//     broker (the PUBACK and the next packet wait for a flush), so the broker
//     queues instead of this process growing;
//   - retries a failed flush with a backoff, on a new connection, keeping the
//     batch; a batch that repeats rows already stored (a redelivery after a
//     reconnect) goes through a staging table and INSERT … ON CONFLICT DO
//     NOTHING; a batch PostgreSQL refuses as data is dropped and counted;
//   - on SIGTERM/SIGINT: unsubscribes, flushes what it holds, exits.
// Forked with IPC (the benchmark), it reports its counters after each commit.
//
// Usage: node --import tsx simulator/copy-subscriber.ts --broker mqtt://127.0.0.1:1883 \
//          --database-url postgres://… [--share pipeline] [--client-id sub-1] \
//          [--batch-rows 2000] [--flush-ms 100] [--max-buffer-rows 20000]
import { createHash } from 'node:crypto'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import mqtt, { type IPublishPacket } from 'mqtt'
import pg from 'pg'
import { from as copyFrom } from 'pg-copy-streams'
import { DEVICES_PREFIX } from '../devices/topics.js'

const COLUMNS = '(device_id, ts, reading_hash, received_at, payload)'

/** COPY text format: backslash, tab, newline and carriage return escaped. */
function copyEscape (s: string): string {
  return /[\\\t\n\r]/.test(s) ? s.replace(/[\\\t\n\r]/g, (c) => c === '\\' ? '\\\\' : c === '\t' ? '\\t' : c === '\n' ? '\\n' : '\\r') : s
}

/** 64 bits of a SHA-1 of the reading's text, as a signed bigint (the column's type). */
function digest64 (text: string): string {
  return createHash('sha1').update(text).digest().readBigInt64BE(0).toString()
}

/** One row of the telemetry table as a COPY text line. */
export function copyLine (deviceId: string, readingJson: string, ts: number, receivedAt: number): string {
  return `${copyEscape(deviceId)}\t${new Date(ts).toISOString()}\t${digest64(readingJson)}\t${new Date(receivedAt).toISOString()}\t${copyEscape(readingJson)}\n`
}

/**
 * The rows of one telemetry message (an object or an array of objects), or
 * undefined when it is not one. Readings are re-serialised after parsing, as
 * a service of this kind does.
 */
export function messageLines (deviceId: string, payload: Buffer | string, receivedAt: number): string[] | undefined {
  let value: unknown
  try { value = JSON.parse(payload.toString()) } catch { return undefined }
  const readings = Array.isArray(value) ? value : [value]
  const lines: string[] = []
  for (const r of readings) {
    if (typeof r !== 'object' || r === null || Array.isArray(r)) return undefined
    const t = (r as { ts?: unknown }).ts
    const ts = typeof t === 'number' ? t : typeof t === 'string' ? Date.parse(t) : receivedAt
    if (!Number.isFinite(ts)) return undefined
    lines.push(copyLine(deviceId, JSON.stringify(r), ts, receivedAt))
  }
  return lines
}

/** COPY of prepared lines into the telemetry table, in the client's current transaction or its own. */
export async function copyLines (client: pg.ClientBase, lines: string[], table = 'telemetry'): Promise<void> {
  await pipeline(Readable.from([lines.join('')]), client.query(copyFrom(`COPY ${table} ${COLUMNS} FROM STDIN`)))
}

/** A redelivered batch: through a staging table, keeping what is already stored. */
async function copyDeduplicated (client: pg.ClientBase, lines: string[]): Promise<void> {
  await client.query('BEGIN')
  try {
    await client.query('CREATE TEMP TABLE IF NOT EXISTS copy_staging (LIKE telemetry) ON COMMIT DELETE ROWS')
    await copyLines(client, lines, 'copy_staging')
    await client.query(`INSERT INTO telemetry ${COLUMNS} SELECT device_id, ts, reading_hash, received_at, payload FROM copy_staging ON CONFLICT DO NOTHING`)
    await client.query('COMMIT')
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {})
    throw err
  }
}

export interface SubscriberCounters {
  /** Messages taken from the broker, and the rows they made. */
  messages: number
  rows: number
  /** Rows committed to the table. */
  committed: number
  /** Messages that were not a reading or an array of readings. */
  invalid: number
  /** Rows of batches PostgreSQL refused as data (dropped). */
  rejected: number
  flushes: number
  /** Flush attempts that failed and were retried. */
  retries: number
}

export interface SubscriberOptions {
  broker: string
  databaseUrl: string
  /** Shared subscription group; empty: a plain subscription. */
  share: string
  topic: string
  clientId: string
  batchRows: number
  flushMs: number
  maxBufferRows: number
  onCommit? (c: SubscriberCounters): void
  /** The broker granted the subscription (after each connection). */
  onSubscribed? (): void
  log? (msg: string): void
}

export interface CopySubscriber {
  readonly counters: SubscriberCounters
  /** Unsubscribes, flushes what is buffered, closes both connections. */
  stop (): Promise<void>
}

export function startCopySubscriber (o: SubscriberOptions): CopySubscriber {
  const log = o.log ?? ((m: string) => console.error(`copy-subscriber ${o.clientId}: ${m}`))
  const counters: SubscriberCounters = { messages: 0, rows: 0, committed: 0, invalid: 0, rejected: 0, flushes: 0, retries: 0 }
  let buffer: string[] = []
  let oldestAt = 0
  let flushing: Promise<void> | undefined
  let stopping = false
  let attemptsWhileStopping = 0
  let timer: NodeJS.Timeout | undefined
  // PUBACKs held back while the buffer is full: each lets mqtt.js read the next packet.
  let held: Array<() => void> = []
  let db: pg.Client | undefined
  const filter = o.share ? `$share/${o.share}/${o.topic}` : o.topic

  async function connection (): Promise<pg.Client> {
    if (db) return db
    const c = new pg.Client({ connectionString: o.databaseUrl, application_name: o.clientId })
    c.on('error', (err) => { log(`database: ${err.message}`); if (db === c) db = undefined })
    await c.connect()
    db = c
    return c
  }

  async function write (lines: string[]): Promise<void> {
    let delay = 100
    let dedup = false
    for (;;) {
      try {
        const c = await connection()
        if (dedup) await copyDeduplicated(c, lines); else await copyLines(c, lines)
        counters.committed += lines.length
        counters.flushes++
        o.onCommit?.({ ...counters })
        return
      } catch (err) {
        const code = (err as { code?: string }).code ?? ''
        if (code === '23505' && !dedup) { dedup = true; continue }
        if (/^2[23]/.test(code)) { // data PostgreSQL refuses: retrying cannot help
          counters.rejected += lines.length
          log(`batch of ${lines.length} rows refused (${code}): ${(err as Error).message}`)
          return
        }
        counters.retries++
        // Stopping with the database gone: give up after a few attempts rather than hang.
        if (stopping && ++attemptsWhileStopping > 3) {
          counters.rejected += lines.length
          log(`stopping: ${lines.length} rows not written (${code || (err as Error).message})`)
          return
        }
        log(`flush failed (${code || (err as Error).message}), retrying in ${delay} ms`)
        const c = db; db = undefined
        await c?.end().catch(() => {})
        await new Promise((resolve) => setTimeout(resolve, delay))
        delay = Math.min(5000, delay * 2)
      }
    }
  }

  function flushSoon () {
    if (flushing || buffer.length === 0) return
    if (buffer.length >= o.batchRows || stopping) { void flush(); return }
    if (!timer) timer = setTimeout(() => { timer = undefined; void flush() }, Math.max(0, oldestAt + o.flushMs - Date.now()))
  }

  function flush (): Promise<void> {
    if (flushing) return flushing
    if (timer) { clearTimeout(timer); timer = undefined }
    if (buffer.length === 0) return Promise.resolve()
    const lines = buffer.length > o.batchRows ? buffer.splice(0, o.batchRows) : buffer
    if (lines === buffer) buffer = []
    oldestAt = Date.now()
    // Room again: the messages held back can be acknowledged and the next ones read.
    const release = held; held = []
    for (const r of release) r()
    flushing = write(lines).finally(() => { flushing = undefined; flushSoon() })
    return flushing
  }

  const client = mqtt.connect(o.broker, { clientId: o.clientId, protocolVersion: 5, clean: true, reconnectPeriod: 1000, connectTimeout: 10_000 })
  client.on('connect', () => {
    client.subscribe(filter, { qos: 1 }, (err, granted) => {
      if (err) { log(`subscribe: ${err.message}`); return }
      // MQTT 5 SUBACK reason codes ≥ 0x80 refuse (0x9E: shared subscriptions not supported).
      const refused = (granted ?? []).find((g) => g.qos >= 0x80)
      if (refused) log(`subscription to ${filter} refused (reason 0x${refused.qos.toString(16)})`); else o.onSubscribed?.()
    })
  })
  client.on('error', (err) => log(`mqtt: ${err.message}`))
  // The PUBACK goes once the message is in the buffer, or, with the buffer full, once a flush made room.
  client.handleMessage = (packet: IPublishPacket, done: (err?: Error) => void) => {
    const receivedAt = Date.now()
    const topic = packet.topic
    const end = topic.lastIndexOf('/')
    const deviceId = topic.startsWith(DEVICES_PREFIX) ? topic.slice(DEVICES_PREFIX.length, end) : ''
    const lines = deviceId ? messageLines(deviceId, packet.payload as Buffer, receivedAt) : undefined
    counters.messages++
    if (!lines) { counters.invalid++; done(); return }
    if (buffer.length === 0) oldestAt = receivedAt
    for (const l of lines) buffer.push(l)
    counters.rows += lines.length
    flushSoon()
    if (buffer.length < o.maxBufferRows) done(); else held.push(() => done())
  }

  return {
    counters,
    async stop () {
      stopping = true
      // Bounded: with the broker gone, mqtt.js would keep the UNSUBSCRIBE queued for ever.
      await Promise.race([client.unsubscribeAsync(filter).catch(() => {}), new Promise((resolve) => setTimeout(resolve, 2000))])
      for (const r of held) r()
      held = []
      while (buffer.length > 0 || flushing) await flush()
      await client.endAsync(true).catch(() => {})
      // Messages that were on their way when the loop above ended.
      for (const r of held) r()
      held = []
      while (buffer.length > 0 || flushing) await flush()
      await db?.end().catch(() => {})
    }
  }
}

async function main () {
  const { values: a } = parseArgs({
    options: {
      broker: { type: 'string', default: 'mqtt://127.0.0.1:1883' },
      'database-url': { type: 'string', default: process.env.DATABASE_URL },
      share: { type: 'string', default: 'pipeline' },
      topic: { type: 'string', default: `${DEVICES_PREFIX}+/telemetry` },
      'client-id': { type: 'string', default: `copy-subscriber-${process.pid}` },
      'batch-rows': { type: 'string', default: '2000' },
      'flush-ms': { type: 'string', default: '100' },
      'max-buffer-rows': { type: 'string', default: '20000' }
    }
  })
  if (!a['database-url']) { console.error('--database-url (or DATABASE_URL) is required'); process.exit(2) }
  const positive = (k: 'batch-rows' | 'flush-ms' | 'max-buffer-rows') => {
    const v = Number(a[k])
    if (!Number.isInteger(v) || v <= 0) { console.error(`--${k} must be a positive integer`); process.exit(2) }
    return v
  }
  const send = (m: unknown) => { if (process.connected) process.send!(m) }
  // The last counters, at most every 50 ms: a report per commit would flood the IPC channel.
  let pending: SubscriberCounters | undefined
  const reporter = process.send ? setInterval(() => { if (pending) { send({ type: 'committed', counters: pending }); pending = undefined } }, 50) : undefined
  const sub = startCopySubscriber({
    broker: a.broker!,
    databaseUrl: a['database-url'],
    share: a.share!,
    topic: a.topic!,
    clientId: a['client-id']!,
    batchRows: positive('batch-rows'),
    flushMs: positive('flush-ms'),
    maxBufferRows: positive('max-buffer-rows'),
    onCommit: (c) => { pending = c },
    onSubscribed: () => send({ type: 'subscribed' })
  })
  let stopped = false
  const stop = () => {
    if (stopped) return
    stopped = true
    void sub.stop().then(() => {
      if (reporter) clearInterval(reporter)
      if (process.connected) process.send!({ type: 'stopped', counters: sub.counters }, () => process.exit(0))
      else { console.error(JSON.stringify(sub.counters)); process.exit(0) }
    })
  }
  process.on('SIGTERM', stop)
  process.on('SIGINT', stop)
  // Forked by a benchmark: it stops when asked, or when the benchmark has gone.
  process.on('message', (m: { type?: string }) => { if (m.type === 'stop') stop() })
  process.on('disconnect', () => {
    stop()
    setTimeout(() => process.exit(1), 15_000).unref()
  })
}

if (process.argv[1] === fileURLToPath(import.meta.url)) await main()

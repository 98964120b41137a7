// The queue and the writer on their own. The sink here is a stand-in only to
// force what a real database cannot be made to do on demand (a precise
// sequence of failures); the real sink is covered by the ingest tests.
import test from 'ava'
import { pino } from 'pino'
import { createIngestQueue, type IngestEntry } from '../../../broker/ingest/ingest-queue.js'
import { createBatchWriter, StandInRefused, type BatchSink } from '../../../broker/ingest/batch-writer.js'
import { waitFor } from '../../helpers/wait.js'

const log = pino({ level: 'silent' })

function entry (rows: number[], done: (err?: Error) => void = () => {}, owner?: object, bytes = 10): IngestEntry<number> {
  return { rows, bytes, owner, enqueuedAt: 0, done }
}

test('the queue holds at most its capacity in rows and in bytes; the rest wait in order', (t) => {
  const q = createIngestQueue<number>(10, 100)
  const admitted: string[] = []
  q.push(entry([1, 2, 3, 4, 5, 6]), () => admitted.push('a'))
  q.push(entry([7, 8, 9, 10, 11]), () => admitted.push('b')) // 11 rows > 10: waits
  q.push(entry([12]), () => admitted.push('c')) // fits, but must not overtake b
  t.deepEqual(admitted, ['a'])
  t.is(q.waiting, 2)
  q.take(6)
  t.deepEqual(admitted, ['a', 'b', 'c'])
  const qb = createIngestQueue<number>(1000, 100)
  qb.push(entry([1], undefined, undefined, 80))
  let big = false
  qb.push(entry([2], undefined, undefined, 30), () => { big = true })
  t.false(big, 'bytes bound holds it back')
  qb.take(10)
  t.true(big)
})

test("cancel() refuses one connection's waiters and lets the others in", (t) => {
  const q = createIngestQueue<number>(2, 1000)
  const gone = {}; const alive = {}
  const refused: string[] = []
  q.push(entry([1, 2]))
  q.push(entry([3, 4], (err) => { if (err) refused.push('g1') }, gone))
  let aliveAdmitted = false
  q.push(entry([5], () => {}, alive), () => { aliveAdmitted = true })
  q.cancel(gone, new Error('closed'))
  t.deepEqual(refused, ['g1'])
  t.is(q.waiting, 1)
  q.take(2)
  t.true(aliveAdmitted)
  t.is(q.waiting, 0)
})

test('the writer never runs more batches than writers, even when taking admits many waiters', async (t) => {
  const q = createIngestQueue<number>(10, 1_000_000)
  let concurrent = 0; let max = 0; let written = 0
  const sink: BatchSink<number> = {
    async write (rows) { concurrent++; max = Math.max(max, concurrent); await new Promise((resolve) => setTimeout(resolve, 2)); written += rows.length; concurrent-- },
    async reject () {},
    async writeProbed () { throw new Error('must not be called') }
  }
  createBatchWriter({ queue: q, sink, batchRows: 10, flushMs: 1, writers: 2, retryMaxMs: 10, log })
  for (let i = 0; i < 200; i++) q.push(entry([i]))
  await waitFor(() => written === 200)
  t.true(max <= 2, `ran ${max} batches at once`)
})

test('connection errors are retried with backoff until they succeed; nothing is acknowledged before', async (t) => {
  const q = createIngestQueue<number>(100, 1_000_000)
  let attempts = 0
  let databaseUp = false
  const sink: BatchSink<number> = {
    async write () {
      attempts++
      if (!databaseUp) throw Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' })
    },
    async reject () { throw new Error('must not be called') },
    async writeProbed () { throw new Error('must not be called') }
  }
  const retries: Error[] = []
  const w = createBatchWriter({ queue: q, sink, batchRows: 10, flushMs: 1, writers: 1, retryBaseMs: 1, retryMaxMs: 5, log, observer: { onRetry: (e) => retries.push(e) } })
  let acked = 'pending' as Error | undefined | 'pending'
  q.push(entry([1, 2, 3], (err) => { acked = err }))
  await waitFor(() => retries.length >= 3)
  t.true(w.degraded)
  t.is(acked, 'pending')
  databaseUp = true
  await waitFor(() => acked !== 'pending')
  t.is(acked, undefined)
  t.is(attempts, retries.length + 1)
  t.false(w.degraded)
})

test('a data error splits the batch until the bad row is alone; the rest commit', async (t) => {
  const q = createIngestQueue<number>(100, 1_000_000)
  const committed: number[] = []; const rejected: number[] = []
  const sink: BatchSink<number> = {
    async write (rows) {
      if (rows.includes(13)) throw Object.assign(new Error('numeric field overflow'), { code: '22003' })
      committed.push(...rows)
    },
    async reject (row) { rejected.push(row) },
    // The store takes a stand-in: the rows are judged on their own.
    async writeProbed (rows) { await this.write(rows) }
  }
  createBatchWriter({ queue: q, sink, batchRows: 100, flushMs: 1, writers: 1, retryMaxMs: 5, log })
  let done = false
  q.push(entry(Array.from({ length: 20 }, (_, i) => i), () => { done = true }))
  await waitFor(() => done)
  t.deepEqual(rejected, [13])
  t.deepEqual(committed.sort((a, b) => a - b), Array.from({ length: 20 }, (_, i) => i).filter((i) => i !== 13))
})

test('a data error that the store gives for a stand-in too is a store fault: held and retried, never dead-lettered', async (t) => {
  const q = createIngestQueue<number>(100, 1_000_000)
  let constraint = true
  const rejected: number[] = []; const committed: number[] = []
  const refuse = () => Object.assign(new Error('new row violates check constraint "x"'), { code: '23514', constraint: 'x' })
  const sink: BatchSink<number> = {
    async write (rows) { if (constraint) throw refuse(); committed.push(...rows) },
    async reject (row) { rejected.push(row) },
    async writeProbed (rows) { if (constraint) throw new StandInRefused(refuse()); await this.write(rows) }
  }
  const faults: Error[] = []
  const w = createBatchWriter({ queue: q, sink, batchRows: 100, flushMs: 1, writers: 1, retryBaseMs: 1, retryMaxMs: 5, log, observer: { onStoreFault: (e) => faults.push(e) } })
  let acked = 'pending' as Error | undefined | 'pending'
  q.push(entry([1, 2, 3, 4], (err) => { acked = err }))
  await waitFor(() => faults.length >= 3)
  t.true(w.degraded)
  t.regex(w.problem ?? '', /refuses every telemetry row \(23514/)
  t.is(acked, 'pending', 'not acknowledged while the store refuses')
  t.deepEqual(rejected, [], 'nothing dead-lettered')
  constraint = false
  await waitFor(() => acked !== 'pending')
  t.is(acked, undefined)
  t.deepEqual(committed, [1, 2, 3, 4])
  t.false(w.degraded)
})

test('a store fault that ends between the failed write and its judgement commits the rows (nothing dead-lettered)', async (t) => {
  const q = createIngestQueue<number>(100, 1_000_000)
  let writes = 0
  const committed: number[] = []; const rejected: number[] = []
  const sink: BatchSink<number> = {
    // The constraint is dropped right after the first attempt fails.
    async write () { writes++; throw Object.assign(new Error('check constraint'), { code: '23514' }) },
    async reject (row) { rejected.push(row) },
    async writeProbed (rows) { committed.push(...rows) }
  }
  createBatchWriter({ queue: q, sink, batchRows: 100, flushMs: 1, writers: 1, retryMaxMs: 5, log })
  let acked = 'pending' as Error | undefined | 'pending'
  q.push(entry([1, 2], (err) => { acked = err }))
  await waitFor(() => acked !== 'pending')
  t.is(acked, undefined)
  t.is(writes, 1)
  t.deepEqual(committed, [1, 2])
  t.deepEqual(rejected, [])
})

test('a dead letter the database refuses is retried, not acknowledged unstored', async (t) => {
  const q = createIngestQueue<number>(100, 1_000_000)
  let deadLettersRefused = true
  const stored: number[] = []
  const sink: BatchSink<number> = {
    async write (rows) { if (rows.includes(7)) throw Object.assign(new Error('invalid input'), { code: '22P02' }); stored.push(...rows) },
    async reject (row) { if (deadLettersRefused) throw Object.assign(new Error('dead_letters refuses'), { code: '23514' }); stored.push(-row) },
    async writeProbed (rows) { await this.write(rows) }
  }
  createBatchWriter({ queue: q, sink, batchRows: 100, flushMs: 1, writers: 1, retryBaseMs: 1, retryMaxMs: 5, log })
  let acked = 'pending' as Error | undefined | 'pending'
  q.push(entry([6, 7], (err) => { acked = err }))
  await waitFor(() => stored.includes(6))
  await new Promise((resolve) => setTimeout(resolve, 50))
  t.is(acked, 'pending')
  deadLettersRefused = false
  await waitFor(() => acked !== 'pending')
  t.is(acked, undefined)
  t.deepEqual(stored, [6, -7])
})

test('the age of the oldest batch in flight is reported while a write stalls', async (t) => {
  const q = createIngestQueue<number>(100, 1_000_000)
  let release = () => {}
  const sink: BatchSink<number> = {
    write: () => new Promise<void>((resolve) => { release = resolve }),
    async reject () {},
    async writeProbed () {}
  }
  const w = createBatchWriter({ queue: q, sink, batchRows: 1, flushMs: 1, writers: 1, retryMaxMs: 5, log })
  t.is(w.oldestBatchMs(), 0)
  let acked = false
  q.push(entry([1], () => { acked = true }))
  await waitFor(() => w.busy === 1)
  await new Promise((resolve) => setTimeout(resolve, 120))
  t.true(w.oldestBatchMs() >= 100, `${w.oldestBatchMs()} ms`)
  release()
  await waitFor(() => acked)
  t.is(w.oldestBatchMs(), 0)
})

test('abort() refuses queued and in-flight entries (never acknowledges them)', async (t) => {
  const q = createIngestQueue<number>(100, 1_000_000)
  const sink: BatchSink<number> = { async write () { throw Object.assign(new Error('down'), { code: 'ECONNREFUSED' }) }, async reject () {}, async writeProbed () {} }
  const w = createBatchWriter({ queue: q, sink, batchRows: 1, flushMs: 1, writers: 1, retryBaseMs: 1, retryMaxMs: 2, log })
  const results: Array<Error | undefined> = []
  q.push(entry([1], (e) => results.push(e)))
  q.push(entry([2], (e) => results.push(e)))
  await waitFor(() => w.degraded)
  w.abort(new Error('shutdown'))
  await waitFor(() => results.length === 2)
  t.true(results.every((e) => e instanceof Error))
})

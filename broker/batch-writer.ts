// Takes entries out of the ingest queue in batches and commits them, on up to
// `writers` concurrent transactions (issue 2).
//
// A batch is cut when the queue holds `batchRows` rows or its oldest entry has
// waited `flushMs`, whichever comes first, and only when a writer is free: while
// all writers are busy, rows accumulate and the next batch is larger, which is
// what keeps throughput up under load (like Vector's sinks: batch by count and
// age, block when full).
//
// Failures (Vector's "explicit list of retriable errors", inverted): an error
// that says a row's data was refused (SQLSTATE classes 22, 23 and 54) splits
// the batch in halves until the offending row is alone; that row is then
// dead-lettered with its reason and the rest commit. Every other error
// (connection refused or lost, timeouts, admin shutdown, too many connections,
// serialization failures) is retried with exponential backoff and full
// jitter, capped at `retryMaxMs`, for as long as the writer runs: rows that
// were accepted are never dropped, and because their PUBACK waits for the
// commit, a device whose message is stuck simply is not acknowledged yet.
import type { IngestEntry, IngestQueue } from './ingest-queue.js'
import type { Logger } from './logger.js'

export interface BatchSink<Row> {
  /** Commits the rows in one transaction, or throws. */
  write (rows: Row[]): Promise<void>
  /** Stores a single row that PostgreSQL refused (dead letter), or throws. */
  reject (row: Row, err: Error): Promise<void>
}

export interface BatchWriterObserver {
  onBatch? (rows: number, seconds: number): void
  onRetry? (err: Error): void
  onRowRejected? (): void
  /** Seconds a message waited in the queue before its batch was cut. */
  onQueueWait? (seconds: number): void
  onCommitted? (rows: number): void
}

export interface BatchWriterOptions<Row> {
  queue: IngestQueue<Row>
  sink: BatchSink<Row>
  batchRows: number
  flushMs: number
  writers: number
  retryBaseMs?: number
  retryMaxMs: number
  log: Logger
  observer?: BatchWriterObserver
}

export interface BatchWriter {
  /** Batches being written now. */
  readonly busy: number
  /** True while a batch is failing and being retried (database trouble). */
  readonly degraded: boolean
  /** Resolves when the queue is empty and no batch is in flight. */
  drain (): Promise<void>
  /** Stops retrying: in-flight batches fail, their entries get the error (no ack). */
  abort (err: Error): void
}

const DATA_ERROR_CLASSES = new Set(['22', '23', '54'])

export function isDataError (err: unknown): boolean {
  const code = (err as { code?: unknown })?.code
  return typeof code === 'string' && code.length === 5 && DATA_ERROR_CLASSES.has(code.slice(0, 2))
}

export function createBatchWriter<Row> (opts: BatchWriterOptions<Row>): BatchWriter {
  const { queue, sink, log } = opts
  const observer = opts.observer ?? {}
  const retryBaseMs = opts.retryBaseMs ?? 50
  let busy = 0
  let failing = 0
  let aborted: Error | undefined
  let timer: NodeJS.Timeout | undefined
  let drainWaiters: Array<() => void> = []
  const sleeps = new Set<{ timer: NodeJS.Timeout, resolve: () => void }>()

  function sleep (ms: number): Promise<void> {
    return new Promise((resolve) => {
      const s = { timer: setTimeout(() => { sleeps.delete(s); resolve() }, ms), resolve }
      sleeps.add(s)
    })
  }

  async function withRetry (what: () => Promise<void>): Promise<void> {
    let counted = false
    try {
      for (let attempt = 0; ; attempt++) {
        if (aborted) throw aborted
        try {
          await what()
          return
        } catch (err) {
          if (isDataError(err) || aborted) throw err
          if (!counted) { counted = true; failing++ }
          observer.onRetry?.(err as Error)
          const cap = Math.min(opts.retryMaxMs, retryBaseMs * 2 ** Math.min(attempt, 20))
          const delay = Math.random() * cap
          const fields = { err: { message: (err as Error).message, code: (err as { code?: string }).code }, attempt, delayMs: Math.round(delay) }
          if (attempt === 0) log.warn(fields, 'batch write failed, retrying')
          else if (attempt % 10 === 0) log.error(fields, 'batch write still failing, retrying')
          await sleep(delay)
        }
      }
    } finally {
      if (counted) failing--
    }
  }

  /** Writes rows; on a data error splits them until the bad row is alone, then dead-letters it. */
  async function writeRows (rows: Row[]): Promise<void> {
    try {
      await withRetry(() => sink.write(rows))
    } catch (err) {
      if (!isDataError(err)) throw err
      if (rows.length === 1) {
        await withRetry(() => sink.reject(rows[0]!, err as Error))
        observer.onRowRejected?.()
        return
      }
      const mid = rows.length >>> 1
      await writeRows(rows.slice(0, mid))
      await writeRows(rows.slice(mid))
    }
  }

  async function writeBatch (entries: Array<IngestEntry<Row>>): Promise<void> {
    const started = performance.now()
    const cutAt = Date.now()
    const rows: Row[] = []
    for (const e of entries) {
      observer.onQueueWait?.((cutAt - e.enqueuedAt) / 1000)
      for (const r of e.rows) rows.push(r)
    }
    try {
      await writeRows(rows)
    } catch (err) {
      log.error({ err: { message: (err as Error).message }, rows: rows.length }, 'batch abandoned; its messages are not acknowledged')
      for (const e of entries) e.done(err as Error)
      return
    }
    observer.onBatch?.(rows.length, (performance.now() - started) / 1000)
    observer.onCommitted?.(rows.length)
    for (const e of entries) e.done()
  }

  let scheduling = false
  function schedule () {
    // take() can admit waiting publishers, which calls back into schedule():
    // the guard keeps that from starting writers beyond the limit.
    if (scheduling) return
    scheduling = true
    try { scheduleNow() } finally { scheduling = false }
  }

  function scheduleNow () {
    while (busy < opts.writers && queue.rows > 0) {
      const oldest = queue.oldestAt()!
      const age = Date.now() - oldest
      if (queue.rows < opts.batchRows && age < opts.flushMs && !queue.closed) {
        if (!timer) {
          timer = setTimeout(() => { timer = undefined; schedule() }, opts.flushMs - age)
        }
        return
      }
      busy++
      const entries = queue.take(opts.batchRows)
      void writeBatch(entries).finally(() => {
        busy--
        schedule()
        if (busy === 0 && queue.rows === 0) {
          const waiters = drainWaiters
          drainWaiters = []
          for (const w of waiters) w()
        }
      })
    }
  }

  queue.onRows(schedule)

  return {
    get busy () { return busy },
    get degraded () { return failing > 0 },
    drain () {
      if (timer) { clearTimeout(timer); timer = undefined }
      // A closed queue no longer waits for age: flush what is there now.
      schedule()
      if (busy === 0 && queue.rows === 0) return Promise.resolve()
      return new Promise((resolve) => drainWaiters.push(resolve))
    },
    abort (err) {
      aborted = err
      if (timer) { clearTimeout(timer); timer = undefined }
      for (const s of sleeps) { clearTimeout(s.timer); s.resolve() }
      sleeps.clear()
      // Entries still queued were never written: refuse them (not acknowledged).
      for (;;) {
        const entries = queue.take(Number.MAX_SAFE_INTEGER)
        if (entries.length === 0) break
        for (const e of entries) e.done(err)
      }
      if (busy === 0) for (const w of drainWaiters.splice(0)) w()
    }
  }
}

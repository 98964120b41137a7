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
// that says data was refused (SQLSTATE classes 22, 23 and 54) means either a
// bad row or a store that refuses every row (a CHECK constraint or trigger
// added to the table, a missing partition, issue 11). The rule that tells
// them apart: the rows are written again in one transaction that first
// writes a minimal stand-in of the same kind, for the same device and time
// (so the same partition), and rolls it back to a savepoint
// (BatchSink.writeProbed). The stand-in's insert keeps the table locked
// against the DDL that adds or drops constraints and triggers until the
// commit, so both verdicts are about the same table.
// - The stand-in is refused: a store fault. Nothing is dead-lettered; the
//   batch is retried with backoff, its PUBACKs wait, readiness reports the
//   fault, and the readings are stored as telemetry once it is gone.
// - The stand-in is taken but the rows are refused: the data is bad. The
//   batch is split in halves (each half judged the same way) until the
//   offending row is alone; that row is dead-lettered with its reason and
//   the rest commit.
// - Both are taken (the fault ended meanwhile): the rows are committed.
// Every other error (connection refused or lost, timeouts, admin shutdown,
// too many connections, serialization failures) is retried with exponential
// backoff and full jitter, capped at `retryMaxMs`, for as long as the writer
// runs: rows that were accepted are never dropped, and because their PUBACK
// waits for the commit, a device whose message is stuck simply is not
// acknowledged yet. A dead letter is a stored message too: one the database
// refuses is held and retried like telemetry, never acknowledged unstored.
import type { IngestEntry, IngestQueue } from './ingest-queue.js'
import type { Logger } from '../logger.js'
import { backoffDelay } from '../backoff.js'

export interface BatchSink<Row> {
  /** Commits the rows in one transaction, or throws. */
  write (rows: Row[]): Promise<void>
  /** Stores a single row that PostgreSQL refused (dead letter), or throws. */
  reject (row: Row, err: Error): Promise<void>
  /**
   * Commits the rows in one transaction that first writes minimal stand-ins
   * for them (same kinds, same keys that pick a partition) and rolls those
   * back to a savepoint. Throws StandInRefused when a stand-in is refused
   * (the store refuses every row), else what the database says.
   */
  writeProbed (rows: Row[]): Promise<void>
}

/** Thrown by BatchSink.writeProbed: the store refused a minimal stand-in row. */
export class StandInRefused extends Error {
  constructor (override readonly cause: Error) { super(cause.message) }
}

export interface BatchWriterObserver<Row = unknown> {
  onBatch? (rows: number, seconds: number): void
  onRetry? (err: Error): void
  /** A data error that the store gives for any row (see the rule above); the batch is held and retried. */
  onStoreFault? (err: Error): void
  onRowRejected? (): void
  /** Seconds a message waited in the queue before its batch was cut. */
  onQueueWait? (seconds: number): void
  onCommitted? (rows: number): void
  /**
   * The rows of each committed write (a batch, or each part of a split
   * batch), after COMMIT: the live event stream's telemetry (issue 13).
   * Rows dead-lettered by a split are not among them.
   */
  onRowsCommitted? (rows: Row[]): void
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
  observer?: BatchWriterObserver<Row>
}

export interface BatchWriter {
  /** Batches being written now. */
  readonly busy: number
  /** True while a batch is failing and being retried (database trouble). */
  readonly degraded: boolean
  /** While degraded: what is failing, in words for /readyz. */
  readonly problem: string | undefined
  /** Milliseconds the oldest batch in flight has been written for (0: none). */
  oldestBatchMs (): number
  /** Resolves when the queue is empty and no batch is in flight. */
  drain (): Promise<void>
  /** Stops retrying: in-flight batches fail, their entries get the error (no ack). */
  abort (err: Error): void
}

const DATA_ERROR_CLASSES = new Set(['22', '23', '54'])

/** The rows themselves were refused (the store takes a stand-in): split, then dead-letter. */
class RowsRefused extends Error {
  constructor (override readonly cause: Error) { super(cause.message) }
}

/** The store refuses any row (the stand-in too): hold and retry. */
class StoreFault extends Error {
  readonly code: string | undefined
  constructor (override readonly cause: Error) {
    super(`the store refuses every row: ${cause.message}`)
    this.code = (cause as { code?: string }).code
  }
}

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
  let problem: string | undefined
  // Start times of the batches being written (one entry per batch).
  const inFlight = new Set<{ startedAt: number }>()
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
          if (err instanceof RowsRefused || aborted) throw err
          if (!counted) { counted = true; failing++ }
          problem = err instanceof StoreFault
            ? `database refuses every telemetry row (${err.code ?? 'data error'}: ${err.cause.message})`
            : 'database writes failing'
          observer.onRetry?.(err as Error)
          const delay = backoffDelay(attempt, { baseMs: retryBaseMs, maxMs: opts.retryMaxMs, jitter: 'full' })
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

  /** One write; a data error is judged with a stand-in (the rule above). */
  async function writeOnce (rows: Row[]): Promise<void> {
    try {
      await sink.write(rows)
    } catch (err) {
      if (!isDataError(err)) throw err
      try {
        await sink.writeProbed(rows)
      } catch (probedErr) {
        if (probedErr instanceof StandInRefused && isDataError(probedErr.cause)) {
          const fault = new StoreFault(probedErr.cause)
          observer.onStoreFault?.(fault)
          throw fault
        }
        if (isDataError(probedErr)) throw new RowsRefused(probedErr as Error)
        throw probedErr // the database is away: retried like any outage
      }
    }
  }

  /** Writes rows; when they are refused, splits them until the bad row is alone, then dead-letters it. */
  async function writeRows (rows: Row[]): Promise<void> {
    try {
      await withRetry(() => writeOnce(rows))
      // Committed: nothing the observer does may fail the batch.
      try { observer.onRowsCommitted?.(rows) } catch (err) { log.warn({ err: { message: (err as Error).message } }, 'observer of committed rows failed') }
    } catch (err) {
      if (!(err instanceof RowsRefused)) throw err
      if (rows.length === 1) {
        // The dead letter is retried like any write (a dead_letters table
        // that refuses rows is a store fault too): stored, or not acknowledged.
        await withRetry(() => sink.reject(rows[0]!, err.cause))
        observer.onRowRejected?.()
        return
      }
      const mid = rows.length >>> 1
      await writeRows(rows.slice(0, mid))
      await writeRows(rows.slice(mid))
    }
  }

  async function writeBatch (entries: Array<IngestEntry<Row>>): Promise<void> {
    const flight = { startedAt: Date.now() }
    inFlight.add(flight)
    try {
      await writeEntries(entries)
    } finally {
      inFlight.delete(flight)
    }
  }

  async function writeEntries (entries: Array<IngestEntry<Row>>): Promise<void> {
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
    get problem () { return failing > 0 ? problem : undefined },
    oldestBatchMs () {
      let oldest = Infinity
      for (const f of inFlight) if (f.startedAt < oldest) oldest = f.startedAt
      return oldest === Infinity ? 0 : Date.now() - oldest
    },
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

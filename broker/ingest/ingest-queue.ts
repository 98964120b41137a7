// The bounded queue between the MQTT hooks and the batch writers (issue 2,
// DESIGN.md rule 2: backpressure, not buffering).
//
// An entry is one accepted message: its rows and a callback fired once they are
// committed (for QoS 1 that callback lets aedes write the PUBACK). The queue
// holds at most `capacityRows` rows and `capacityBytes` payload bytes. An entry
// that does not fit waits in FIFO order; while it waits, its publisher's hook
// has not returned, so aedes does not read more from that socket and TCP
// pushes back to the device. What can wait is therefore bounded by the live
// connections times what aedes parsed of one socket read — and while anyone
// waits, aedes parses 4 KiB slices instead of whole reads (mqtt-broker.ts,
// sliceReads), so about one slice's worth of PUBLISHes per connection; the
// waiters of a connection that closes are removed (cancel()).

export interface IngestEntry<Row> {
  rows: Row[]
  /** Payload bytes the entry holds (counted against capacityBytes). */
  bytes: number
  /** The connection it came from, so its waiters can be cancelled when it closes. */
  owner?: object
  /** Set when the entry enters the queue (after any wait for room). */
  enqueuedAt: number
  /** Called once every row is committed (or dead-lettered), or with an error if the pipeline gave up on it. */
  done (err?: Error): void
}

export interface QueueObserver {
  /** A publisher was held for `ms` because the queue was full. */
  onBackpressure? (ms: number): void
}

export interface IngestQueue<Row> {
  /**
   * Adds an entry. `admitted` is called when it is in the queue (at once when
   * there is room, later when there was not). Returns false when the queue is
   * closed: the entry is refused and nothing was taken.
   */
  push (entry: IngestEntry<Row>, admitted?: () => void): boolean
  /** Removes whole entries, up to `maxRows` rows (always at least one entry). */
  take (maxRows: number): Array<IngestEntry<Row>>
  /** Registers the single consumer callback, called whenever rows are added. */
  onRows (listener: () => void): void
  /** Rows waiting in the queue. */
  readonly rows: number
  /** Publishers waiting for room. */
  readonly waiting: number
  readonly capacity: number
  /** Payload bytes in the queue. */
  readonly bytes: number
  /** Enqueue time of the oldest queued entry, or undefined. */
  oldestAt (): number | undefined
  /** Refuses the waiting (not yet admitted) entries of one owner. */
  cancel (owner: object, err: Error): void
  /** Stops admitting; waiting publishers are refused with the error. */
  close (err: Error): void
  readonly closed: boolean
}

interface Waiter<Row> { entry: IngestEntry<Row> | undefined, admitted: (() => void) | undefined, since: number }

export function createIngestQueue<Row> (capacityRows: number, capacityBytes: number, observer: QueueObserver = {}, now: () => number = Date.now): IngestQueue<Row> {
  // A plain array with a moving head: take() is O(taken) and push() is O(1);
  // the array is compacted when the head has moved far enough.
  let items: Array<IngestEntry<Row>> = []
  let head = 0
  let rows = 0
  let bytes = 0
  let closed = false
  // Waiters: array + head index, like items (shift() would be O(n) per admit).
  let waiters: Array<Waiter<Row>> = []
  let waitHead = 0
  let cancelled = 0 // cancelled waiters not yet skipped over
  let listener: () => void = () => {}

  function fits (e: IngestEntry<Row>): boolean {
    // An entry larger than the whole capacity is still admitted into an
    // empty queue, or it could never be stored.
    return rows === 0 || (rows + e.rows.length <= capacityRows && bytes + e.bytes <= capacityBytes)
  }

  function admit (entry: IngestEntry<Row>) {
    entry.enqueuedAt = now()
    items.push(entry)
    rows += entry.rows.length
    bytes += entry.bytes
  }

  function admitWaiters () {
    let admittedAny = false
    while (waitHead < waiters.length) {
      const w = waiters[waitHead]!
      if (w.entry !== undefined && !fits(w.entry)) break
      waiters[waitHead++] = undefined as unknown as Waiter<Row>
      if (w.entry === undefined) { cancelled--; continue }
      admit(w.entry)
      observer.onBackpressure?.(now() - w.since)
      w.admitted?.()
      admittedAny = true
    }
    if (waitHead > 1024 && waitHead * 2 > waiters.length) {
      waiters = waiters.slice(waitHead)
      waitHead = 0
    }
    if (admittedAny) listener()
  }

  return {
    get rows () { return rows },
    get waiting () { return waiters.length - waitHead - cancelled },
    get bytes () { return bytes },
    get capacity () { return capacityRows },
    get closed () { return closed },
    push (entry, admitted) {
      if (closed) return false
      // FIFO: nobody overtakes a publisher that is already waiting.
      if (waitHead === waiters.length && fits(entry)) {
        admit(entry)
        admitted?.()
        listener()
      } else {
        waiters.push({ entry, admitted, since: now() })
      }
      return true
    },
    take (maxRows) {
      const out: Array<IngestEntry<Row>> = []
      let n = 0
      let b = 0
      while (head < items.length) {
        const e = items[head]!
        if (out.length > 0 && n + e.rows.length > maxRows) break
        out.push(e)
        n += e.rows.length
        b += e.bytes
        items[head++] = undefined as unknown as IngestEntry<Row>
      }
      rows -= n
      bytes -= b
      if (head > 1024 && head * 2 > items.length) {
        items = items.slice(head)
        head = 0
      }
      if (out.length > 0) admitWaiters()
      return out
    },
    onRows (l) { listener = l },
    cancel (owner, err) {
      for (let i = waitHead; i < waiters.length; i++) {
        const w = waiters[i]!
        if (w.entry?.owner === owner) {
          const entry = w.entry
          w.entry = undefined
          cancelled++
          entry.done(err)
        }
      }
      // A cancelled head may have been what blocked the others.
      admitWaiters()
    },
    oldestAt () { return head < items.length ? items[head]!.enqueuedAt : undefined },
    close (err) {
      if (closed) return
      closed = true
      const refused = waiters.slice(waitHead)
      waiters = []
      waitHead = 0
      cancelled = 0
      for (const w of refused) w.entry?.done(err)
    }
  }
}

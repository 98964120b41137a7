// One Server-Sent Events stream of GET /v1/events (issue 13): its filter, its
// bounded buffer, the count of what it had to drop, and its heartbeat.
//
// Frames (https://html.spec.whatwg.org/multipage/server-sent-events.html):
//   id: 42                 (stored kinds only: what Last-Event-ID resumes from)
//   event: config
//   data: {"id":"42","kind":"config",…}
//
// Bounded, never blocking the producers: events are queued here and written
// once per turn of the event loop (one write() for everything that arrived
// in that turn, not one per event). When the socket does not take more
// (write() returned false: the client is not reading), events queue up to
// `bufferEvents` (and BUFFER_BYTES); beyond, they are counted and dropped,
// and once the socket drains the client gets `event: dropped` with the
// count, after the events queued before the loss. Memory per stream is
// therefore bounded by the buffer plus one chunk in the socket.
//
// Each event's JSON is computed once per process (fleet-events.ts
// eventJson), whatever the number of streams; a stream only concatenates.
import type { ServerResponse } from 'node:http'
import { eventJson, type EventKind, type FleetEvent } from './fleet-events.js'

/** Second bound of a stream's queue, for large events (telemetry readings up to TELEMETRY_MAX_BYTES). */
export const BUFFER_BYTES = 8 * 1024 * 1024

export interface EventFilter {
  kinds: ReadonlySet<EventKind>
  /** Only events about these devices (events without a device, e.g. rollouts, are left out). */
  deviceIds?: ReadonlySet<string>
  /** Only events about devices this says match (a label selector); as deviceIds. */
  matches? (deviceId: string): boolean
}

export function accepts (filter: EventFilter, e: FleetEvent): boolean {
  if (!filter.kinds.has(e.kind)) return false
  if (filter.deviceIds === undefined && filter.matches === undefined) return true
  if (e.deviceId === undefined) return false
  if (filter.deviceIds !== undefined && !filter.deviceIds.has(e.deviceId)) return false
  if (filter.matches !== undefined && !filter.matches(e.deviceId)) return false
  return true
}

const FRAME = Symbol('fleetgate.eventFrame')
type Framed = FleetEvent & { [FRAME]?: string }

/** The event's SSE frame, built once per event however many streams send it. */
export function frameOf (e: FleetEvent): string {
  let frame = (e as Framed)[FRAME]
  if (frame === undefined) {
    // eventJson has no CR/LF, so the data is one line.
    frame = (e.id !== undefined ? 'id: ' + e.id + '\n' : '') + 'event: ' + e.kind + '\ndata: ' + eventJson(e) + '\n\n'
    ;(e as Framed)[FRAME] = frame
  }
  return frame
}

export interface EventStreamOptions {
  res: ServerResponse
  filter: EventFilter
  /** Most events queued while the client does not read. */
  bufferEvents: number
  heartbeatMs: number
  onSent? (events: number): void
  /** Called as events are dropped (the client is told the count later). */
  onDropped? (events: number): void
}

export interface EventStream {
  /** A live event: sent if the filter takes it (held while a replay runs). */
  offer (e: FleetEvent): void
  /**
   * Frames of several events, already filtered and encoded once for every
   * stream of the same filter (routes/events.ts groups them): the cost of a
   * watched event does not grow with the number of streams watching it.
   */
  offerChunk (chunk: Buffer, events: number): void
  /** An event of the replay (already filtered by the query). */
  send (e: FleetEvent): void
  /** Live events are held (in order, bounded: stored ones beyond the bound are counted in passedOver, others dropped) until release(). */
  hold (): void
  /** Sends the held events that `skip` does not reject (those the replay already sent), then goes live, still skipping those (a late live copy). */
  release (skip: (e: FleetEvent) => boolean): void
  readonly closed: boolean
  /** Stored events not held because the hold was full (the replay must cover them). */
  readonly passedOver: number
  /** Resolves once everything queued was handed to the socket and it has room (paces the replay). */
  writable (): Promise<void>
  onClose (fn: () => void): void
  /** Ends the stream (server shutdown). */
  end (): void
}

export function createEventStream (opts: EventStreamOptions): EventStream {
  const { res, filter } = opts
  // Frames (strings), or chunks of frames shared with other streams (Buffers, see offerChunk).
  let queue: Array<string | Buffer> = []
  let queuedEvents = 0
  let queuedBytes = 0
  let dropped = 0
  let blocked = false
  let scheduled = false
  let closed = false
  let held: FleetEvent[] | undefined
  // After a resume: the live copy of an event the replay already sent can
  // arrive after release() (events are published after COMMIT, so the
  // replay may read one before its live copy comes): still skipped.
  let alreadySent: ((e: FleetEvent) => boolean) | undefined
  let passedOver = 0
  const closers: Array<() => void> = []
  const drainWaiters: Array<() => void> = []

  function drop () {
    dropped++
    opts.onDropped?.(1)
    schedule()
  }

  function enqueue (frame: string | Buffer, events = 1): void {
    if (closed) return
    // What one turn produced is always taken by a stream with nothing
    // queued (a committed batch can exceed the bound; it is in memory
    // anyway, shared by the streams): the bound is on the backlog of a
    // client that does not read. A shared chunk is dropped whole.
    if (queue.length > 0 && (queuedEvents + events > opts.bufferEvents || queuedBytes + frame.length > BUFFER_BYTES)) {
      dropped += events
      opts.onDropped?.(events)
      // The count goes out with the next write (once the socket drains).
      schedule()
      return
    }
    queue.push(frame)
    queuedEvents += events
    queuedBytes += frame.length
    schedule()
  }

  function schedule () {
    if (scheduled || blocked || closed) return
    scheduled = true
    setImmediate(flush)
  }

  function flush () {
    scheduled = false
    if (blocked || closed) return
    const n = queuedEvents
    if (queue.length === 0 && dropped === 0) return
    const parts = queue
    queue = []
    queuedEvents = 0
    queuedBytes = 0
    if (dropped > 0) {
      // Told once the client has caught up (the socket drained), after the
      // events queued before the loss.
      parts.push('event: dropped\ndata: {"count":' + dropped + '}\n\n')
      dropped = 0
    }
    if (n > 0) opts.onSent?.(n)
    // One write: strings joined; shared Buffers written as they are. Node
    // corks the socket for the rest of the turn on a response's first write,
    // so they still go out in one syscall. Not res.cork(): on Node 22 a
    // corked response answers write() from its own buffer (false past the
    // high-water mark) and emits no 'drain' if the socket then takes it all,
    // and the stream would wait for one forever.
    let ok = true
    if (parts.every((p) => typeof p === 'string')) ok = res.write(parts.length === 1 ? parts[0]! : parts.join(''))
    else for (const p of parts) ok = res.write(p) && ok
    if (!ok) {
      blocked = true
      res.once('drain', () => {
        blocked = false
        for (const w of drainWaiters.splice(0)) w()
        flush()
      })
    }
  }

  const heartbeat = setInterval(() => {
    // A comment keeps proxies from timing out an idle stream; a stream
    // that is blocked or busy needs none.
    if (!blocked && !closed && queue.length === 0) res.write(': ping\n\n')
  }, opts.heartbeatMs)
  heartbeat.unref()

  function close () {
    if (closed) return
    closed = true
    clearInterval(heartbeat)
    queue = []
    held = undefined
    for (const w of drainWaiters.splice(0)) w()
    for (const fn of closers.splice(0)) { try { fn() } catch {} }
  }
  res.on('close', close)
  res.on('error', close)

  return {
    offer (e) {
      if (closed || !accepts(filter, e)) return
      if (held) {
        if (held.length < opts.bufferEvents) held.push(e)
        // A stored event beyond the bound is left to the replay (it is
        // committed, so a replay query that starts later finds it).
        else if (e.id !== undefined) passedOver++
        else drop()
        return
      }
      if (alreadySent !== undefined && e.id !== undefined && alreadySent(e)) return
      enqueue(frameOf(e))
    },
    send (e) { enqueue(frameOf(e)) },
    offerChunk (chunk, events) { if (!held) enqueue(chunk, events) },
    hold () { held ??= [] },
    release (skip) {
      const h = held
      held = undefined
      alreadySent = skip
      if (!h) return
      for (const e of h) if (!skip(e)) enqueue(frameOf(e))
    },
    get closed () { return closed },
    get passedOver () { return passedOver },
    async writable () {
      for (;;) {
        if (closed) return
        if (blocked) { await new Promise<void>((resolve) => drainWaiters.push(resolve)); continue }
        // The flush scheduled for this turn runs first.
        if (queue.length > 0) { await new Promise((resolve) => setImmediate(resolve)); continue }
        return
      }
    },
    onClose (fn) { if (closed) fn(); else closers.push(fn) },
    end () {
      if (closed) return
      // What is queued is written first; end() then closes the response.
      if (!blocked) flush()
      res.end()
      close()
    }
  }
}

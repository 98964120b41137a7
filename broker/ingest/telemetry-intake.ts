// Telemetry intake (issue 12: moved here from the MQTT hook): a message a
// device published on its telemetry topic is decoded, turned into rows —
// readings, or one dead letter with its raw bytes and a stable reason — and
// pushed into the bounded ingest queue. `done` is called once the batch
// holding it is committed (ack after commit), or with an error when it will
// not be (the device retransmits). The MQTT side hands over (device,
// payload, qos, connection) and knows nothing of rows.
//
// QoS 0 releases its caller as soon as the message is admitted to the queue
// (nothing to acknowledge); while the queue is full it waits like the others
// (backpressure, not buffering).
import type { IngestQueue } from './ingest-queue.js'
import type { IngestRow } from './telemetry-sink.js'
import { cleanText } from './telemetry-sink.js'
import { decodeTelemetry, type RejectReason } from './telemetry-decoder.js'
import type { Metrics } from '../metrics.js'
import { topics } from '../../devices/topics.js'

// Dead letters keep the raw bytes, but an oversized payload is kept only up to
// this many bytes (its full size is in `detail`).
const DEAD_LETTER_MAX_BYTES = 64 * 1024
const DAY_MS = 86_400_000

export interface IntakeOutcome {
  /** Set when the message was stored as a dead letter rather than as readings. */
  deadLetter?: RejectReason
}

export interface TelemetryIntake {
  /**
   * Hands over one telemetry message. `done(null, outcome)` once it is
   * committed (QoS 0: once admitted); `done(err)` when it will not be stored.
   * `owner` is the connection: its waiters are dropped when it closes.
   */
  take (deviceId: string, payload: Buffer, qos: 0 | 1 | 2, owner: object, done: (err: Error | null, outcome?: IntakeOutcome) => void): void
  /** The connection closed: its messages still waiting for room will never be acknowledged. */
  cancel (owner: object): void
  /** Stops the clock of the accepted `ts` window. */
  close (): void
}

export interface TelemetryIntakeOptions {
  queue: IngestQueue<IngestRow>
  metrics: Metrics
  maxBytes: number
  maxReadings: number
  maxDepth: number
  retentionDays: number
  maxFutureMs: number
  /** A dead letter (or other per-message event), for a sampled log line. */
  note? (key: string, fields: Record<string, unknown>, msg: string): void
  /**
   * An exception from a callback that ran later, outside the caller's stack
   * (called by the batch writer): the MQTT side contains it per connection.
   * Without it, the exception propagates.
   */
  fail? (owner: object, err: unknown): void
}

type IntakeDone = (err: Error | null, outcome?: IntakeOutcome) => void

const STORED: IntakeOutcome = Object.freeze({})

interface EntryContext {
  metrics: Metrics
  connectionGone: Error
  fail? (owner: object, err: unknown): void
}

// One queued telemetry message. A class with a method rather than closures:
// this is allocated for every message the broker receives (issue 15), and the
// batch writer calls `entry.done()` as a method.
class TelemetryEntry {
  enqueuedAt = 0
  admitted = false
  constructor (
    readonly ctx: EntryContext,
    readonly rows: IngestRow[],
    readonly bytes: number,
    readonly owner: object,
    readonly receivedAt: number,
    readonly qos0: boolean,
    readonly outcome: IntakeOutcome,
    readonly callerDone: IntakeDone
  ) {}

  /** Called by the batch writer once committed, or with an error: an exception here must not stop it acknowledging the batch's other entries. */
  done (err?: Error): void {
    try {
      if (err) {
        // Not stored: no PUBACK; the connection closes and the device
        // retransmits (QoS 1) after reconnecting. A QoS 0 message refused
        // before admission must still release its caller.
        this.ctx.metrics.refused.inc({ reason: err === this.ctx.connectionGone ? 'connection_closed' : 'pipeline_aborted' })
        if (!this.qos0 || !this.admitted) this.callerDone(err)
        return
      }
      this.ctx.metrics.pubackLatency.observe((Date.now() - this.receivedAt) / 1000)
      if (!this.qos0) this.callerDone(null, this.outcome)
    } catch (caught) {
      this.contain(caught)
    }
  }

  /** QoS 0: in the queue, so its publisher is released (nothing to acknowledge). */
  admit (): void {
    this.admitted = true
    try {
      this.callerDone(null, this.outcome)
    } catch (caught) {
      this.contain(caught)
    }
  }

  private contain (caught: unknown): void {
    if (!this.ctx.fail) throw caught
    this.ctx.fail(this.owner, caught)
  }
}

export function createTelemetryIntake (opts: TelemetryIntakeOptions): TelemetryIntake {
  const { queue, metrics } = opts
  // The accepted ts window moves with the clock; recomputed once a second.
  const limits = { maxBytes: opts.maxBytes, maxReadings: opts.maxReadings, maxDepth: opts.maxDepth, minTs: 0, maxTs: 0 }
  const updateWindow = () => {
    const now = Date.now()
    limits.minTs = Math.floor(now / DAY_MS) * DAY_MS - opts.retentionDays * DAY_MS
    limits.maxTs = now + opts.maxFutureMs
  }
  updateWindow()
  const windowTimer = setInterval(updateWindow, 1000)
  windowTimer.unref()
  const connectionGone = new Error('connection closed while waiting for room in the ingest queue')
  const ctx: EntryContext = { metrics, connectionGone, fail: opts.fail }

  function rowsOf (deviceId: string, payload: Buffer, receivedAt: number): { rows: IngestRow[], deadLetter?: RejectReason } {
    const decoded = decodeTelemetry(payload, receivedAt, limits)
    if (decoded.ok) {
      const readings = decoded.readings
      const rows: IngestRow[] = new Array(readings.length)
      for (let i = 0; i < readings.length; i++) {
        const r = readings[i]!
        rows[i] = { kind: 'reading', deviceId, ts: r.ts, hash: r.hash, receivedAt, json: r.json }
      }
      metrics.readingsTaken(rows.length)
      return { rows }
    }
    metrics.deadLetters.inc({ reason: decoded.reason })
    opts.note?.(`dead_letter:${decoded.reason}`, { deviceId, reason: decoded.reason, detail: decoded.detail }, 'telemetry dead-lettered')
    return {
      deadLetter: decoded.reason,
      rows: [{
        kind: 'dead',
        deviceId,
        topic: topics.telemetry(deviceId),
        // A copy, so an oversized packet's whole buffer is not kept alive by the slice.
        payload: payload.length > DEAD_LETTER_MAX_BYTES ? Buffer.from(payload.subarray(0, DEAD_LETTER_MAX_BYTES)) : payload,
        reason: decoded.reason,
        detail: cleanText(decoded.detail),
        receivedAt
      }]
    }
  }

  return {
    take (deviceId, payload, qos, owner, done) {
      const receivedAt = Date.now()
      const { rows, deadLetter } = rowsOf(deviceId, payload, receivedAt)
      const qos0 = qos === 0
      const entry = new TelemetryEntry(ctx, rows, payload.length, owner, receivedAt, qos0, deadLetter ? { deadLetter } : STORED, done)
      const accepted = queue.push(entry, qos0 ? () => entry.admit() : undefined)
      if (!accepted) {
        metrics.refused.inc({ reason: 'draining' })
        done(new Error('server is shutting down'))
      }
    },
    cancel (owner) {
      queue.cancel(owner, connectionGone)
    },
    close () {
      clearInterval(windowTimer)
    }
  }
}

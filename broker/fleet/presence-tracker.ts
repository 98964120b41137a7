// Online/offline and last-seen per device (issue 2). Events only touch an
// in-memory map; a timer writes the coalesced changes in one UPDATE … FROM
// unnest(…) every `flushMs` — never one UPDATE per message. A failed write
// keeps the changes and merges them with newer ones for the next attempt.
import type pg from 'pg'
import type { Logger } from '../logger.js'
import { every } from '../periodic.js'
import type { EventHub } from '../../devices/fleet-events.js'

interface Change {
  /** undefined: only last-seen moved. */
  online: boolean | undefined
  /** When the device went online (connected), if it did in this window. */
  connectedAt: number | undefined
  lastSeen: number
}

export interface PresenceTracker {
  /** `event: false`: no presence event (a revived replica re-announcing its devices to the database). */
  connected (deviceId: string, at?: number, opts?: { event?: boolean }): void
  /** `reason`: why the connection ended (fleetgate_mqtt_disconnects_total's reason), for the presence event. */
  disconnected (deviceId: string, at?: number, reason?: string): void
  /** Activity (publish, ping) moves last-seen. */
  seen (deviceId: string, at?: number): void
  flush (): Promise<void>
  /** Devices with changes not yet written. */
  readonly pending: number
  close (): Promise<void>
}

export interface PresenceTrackerOptions {
  pool: pg.Pool
  brokerId: string
  flushMs: number
  log: Logger
  onFlush? (ok: boolean): void
  /**
   * The live event stream (issue 13): `presence` events (connected,
   * disconnected with its reason), built only while a stream wants them.
   * Live only: presence is stored as devices.online / last_seen_at.
   */
  events?: EventHub
}

// With several replicas a device may move: it connects to B while A still
// has its disconnect (or even its connect) waiting to be flushed. So a
// replica takes a device over only with a connection at least as new as the
// recorded one, and sets it offline only while it is still the recorded
// owner (broker_id); last-seen only ever moves forward. "As new" compares
// two replicas' clocks while the old one still holds the device online:
// skew beyond the time the device took to move leaves it offline until its
// next connect (documented; replicas are expected to run NTP).
const TAKES = `(u.online AND u.connected IS NOT NULL
                AND (NOT d.online OR d.connected_at IS NULL OR to_timestamp(u.connected / 1000.0) >= d.connected_at))`
const UPDATE_PRESENCE = {
  name: 'fleetgate_update_presence',
  text: `UPDATE devices AS d SET
           online = CASE WHEN ${TAKES} THEN true
                         WHEN u.online = false AND d.broker_id IS NOT DISTINCT FROM $5 THEN false
                         ELSE d.online END,
           connected_at = CASE WHEN ${TAKES} THEN to_timestamp(u.connected / 1000.0) ELSE d.connected_at END,
           broker_id = CASE WHEN ${TAKES} THEN $5 ELSE d.broker_id END,
           last_seen_at = greatest(d.last_seen_at, to_timestamp(u.seen / 1000.0))
         FROM unnest($1::text[], $2::bool[], $3::float8[], $4::float8[]) AS u(id, online, connected, seen)
         WHERE d.id = u.id`
}

export function createPresenceTracker (opts: PresenceTrackerOptions): PresenceTracker {
  let changes = new Map<string, Change>()
  let closed = false
  const events = opts.events

  function record (id: string, online: boolean | undefined, at: number) {
    const prev = changes.get(id)
    if (!prev) {
      changes.set(id, { online, connectedAt: online === true ? at : undefined, lastSeen: at })
      return
    }
    if (online !== undefined) prev.online = online
    if (online === true) prev.connectedAt = at
    if (at > prev.lastSeen) prev.lastSeen = at
  }

  async function write (batch: Map<string, Change>): Promise<void> {
    const ids: string[] = []; const online: Array<boolean | null> = []
    const connected: Array<number | null> = []; const seen: number[] = []
    for (const [id, c] of batch) {
      ids.push(id); online.push(c.online ?? null); connected.push(c.connectedAt ?? null); seen.push(c.lastSeen)
    }
    await opts.pool.query({ ...UPDATE_PRESENCE, values: [ids, online, connected, seen, opts.brokerId] })
  }

  async function flushOnce (): Promise<void> {
    if (changes.size === 0) return
    const batch = changes
    changes = new Map()
    try {
      await write(batch)
      opts.onFlush?.(true)
    } catch (err) {
      opts.onFlush?.(false)
      opts.log.warn({ err: { message: (err as Error).message }, devices: batch.size }, 'presence write failed; will retry')
      // Newer events win over the failed batch.
      for (const [id, c] of batch) {
        const newer = changes.get(id)
        if (!newer) changes.set(id, c)
        else {
          if (newer.online === undefined) newer.online = c.online
          if (newer.connectedAt === undefined) newer.connectedAt = c.connectedAt
          if (c.lastSeen > newer.lastSeen) newer.lastSeen = c.lastSeen
        }
      }
      throw err
    }
  }

  // flushOnce() has logged and counted a failure already (and kept the batch).
  const loop = every(flushOnce, { intervalMs: opts.flushMs, onError: () => {} })
  const flush = (): Promise<void> => loop.runNow()

  return {
    connected (id, at = Date.now(), o) {
      record(id, true, at)
      if (o?.event !== false && events?.wants('presence')) events.publish([{ kind: 'presence', type: 'connected', at: new Date(at).toISOString(), deviceId: id, data: {} }])
    },
    disconnected (id, at = Date.now(), reason) {
      record(id, false, at)
      if (events?.wants('presence')) events.publish([{ kind: 'presence', type: 'disconnected', at: new Date(at).toISOString(), deviceId: id, data: reason !== undefined ? { reason } : {} }])
    },
    seen (id, at = Date.now()) {
      // Hot path: one map look-up and a number store.
      const prev = changes.get(id)
      if (prev) { if (at > prev.lastSeen) prev.lastSeen = at } else record(id, undefined, at)
    },
    flush,
    get pending () { return changes.size },
    async close () {
      if (closed) return
      closed = true
      await loop.close()
      await flushOnce()
    }
  }
}

// Which replicas are alive (issue 6). Each broker process heartbeats a row
// in `brokers`; every heartbeat it also sweeps: devices marked online by a
// replica whose heartbeat is older than the expiry are set offline and the
// dead replica's row is removed. So a replica killed without shutting down
// leaves its devices "online" for at most expiry + one heartbeat, and a
// device that reconnected elsewhere meanwhile is untouched (its broker_id
// already names the live replica, see presence-tracker.ts).
//
// The sweep is idempotent and cheap (partial index on online devices), so
// every replica runs it; no lock is needed.
import { hostname } from 'node:os'
import type pg from 'pg'
import type { Logger } from '../logger.js'
import { every, warnOnError, type Periodic } from '../periodic.js'

export interface BrokerRegistry {
  /** Records this broker and runs a first sweep (start-up). */
  start (): Promise<void>
  /** One heartbeat and sweep; returns how many devices were set offline. */
  beat (): Promise<number>
  /** Removes this broker's row (graceful shutdown; its devices were set offline by presence). */
  close (): Promise<void>
}

export interface BrokerRegistryOptions {
  pool: pg.Pool
  brokerId: string
  heartbeatMs: number
  expiryMs: number
  log: Logger
  onSwept? (devices: number): void
  /**
   * Our row had been removed by another replica's sweep (our heartbeats were
   * late: a long database outage, a stalled event loop) and our devices set
   * offline although they are still connected here: tell presence again.
   */
  onRevived? (): void
}

const HEARTBEAT = {
  name: 'fleetgate_broker_heartbeat',
  text: `INSERT INTO brokers (id, host) VALUES ($1, $2)
         ON CONFLICT (id) DO UPDATE SET heartbeat_at = now()
         RETURNING (xmax = 0) AS inserted`
}

// Devices online under a broker that has no live row are offline. A NULL
// broker_id (rows written before the registry existed) counts as dead too.
// (A data-modifying WITH runs to completion whether or not it is read; both
// parts see the same snapshot.)
const SWEEP = {
  name: 'fleetgate_broker_sweep',
  text: `WITH dead AS (
           DELETE FROM brokers WHERE heartbeat_at < now() - make_interval(secs => $1 / 1000.0) RETURNING id
         )
         UPDATE devices AS d SET online = false
         WHERE d.online
           AND NOT EXISTS (SELECT 1 FROM brokers b WHERE b.id = d.broker_id
                                                   AND b.heartbeat_at >= now() - make_interval(secs => $1 / 1000.0))`
}

export function createBrokerRegistry (opts: BrokerRegistryOptions): BrokerRegistry {
  const { pool, brokerId, log } = opts
  const host = hostname()
  let closed = false

  let lastBeatAt: number | undefined
  async function beatOnce (): Promise<number> {
    const beat = await pool.query<{ inserted: boolean }>({ ...HEARTBEAT, values: [brokerId, host] })
    const previous = lastBeatAt
    lastBeatAt = Date.now()
    if (previous !== undefined && beat.rows[0]?.inserted) {
      log.warn('this replica had been presumed dead (heartbeats late); re-announcing its devices')
      opts.onRevived?.()
    }
    // After a gap in our own heartbeats (the database was away for us, and
    // likely for every replica), the others have not had a chance to beat
    // yet: judge them next time, not now.
    if (previous !== undefined && lastBeatAt - previous > opts.expiryMs) return 0
    const res = await pool.query({ ...SWEEP, values: [opts.expiryMs] })
    const swept = res.rowCount ?? 0
    if (swept > 0) {
      log.warn({ devices: swept }, 'devices of replicas that stopped heartbeating set offline')
      opts.onSwept?.(swept)
    }
    return swept
  }

  let loop: Periodic<number> | undefined
  let beating: Promise<number> | undefined
  const beat = (): Promise<number> => loop ? loop.runNow() : (beating ??= beatOnce().finally(() => { beating = undefined }))

  return {
    async start () {
      await beat()
      loop = every(beatOnce, { intervalMs: opts.heartbeatMs, onError: warnOnError(log, 'broker heartbeat') })
    },
    beat,
    async close () {
      if (closed) return
      closed = true
      await loop?.close()
      await beating?.catch(() => {})
      await pool.query('DELETE FROM brokers WHERE id = $1', [brokerId])
    }
  }
}

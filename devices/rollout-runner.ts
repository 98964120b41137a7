// Fleet rollouts (issue 3): set the desired config of every device matching a
// label selector and push it at a given rate. Targets are fixed when the
// rollout is created; each step claims the next targets with FOR UPDATE SKIP
// LOCKED, bumps their desired version in the same statement and then
// delivers, so several replicas can run one rollout without pushing a device
// twice, and a restarted process carries on where the rollout stood.
import { randomUUID } from 'node:crypto'
import type pg from 'pg'
import type { Logger } from 'pino'
import type { DeviceDispatch } from './dispatch.js'
import { DomainError, notFound } from './domain-error.js'
import { topics } from './topics.js'
import { withTransaction } from './transaction.js'
import { isUuid } from './uuid.js'

export type RolloutStatus = 'running' | 'paused' | 'cancelled' | 'completed'

export interface Rollout {
  id: string
  selector: Record<string, string>
  config: unknown
  ratePerSecond: number | null
  status: RolloutStatus
  createdAt: Date
  updatedAt: Date
  counts: { targeted: number, pushed: number, inSync: number, pending: number }
}

export interface RolloutRunner {
  create (selector: Record<string, string>, config: unknown, ratePerSecond: number | null): Promise<Rollout>
  get (id: string): Promise<Rollout | undefined>
  /** not_found for an unknown rollout; invalid_transition when its status does not allow the action. */
  setStatus (id: string, action: 'pause' | 'resume' | 'cancel'): Promise<Rollout>
  /** Starts pushing (once the schema exists and devices can be reached). */
  start (): void
  close (): Promise<void>
}

const TICK_MS = 100
const UNBOUNDED_STEP = 2000

export function createRolloutRunner (deps: { pool: pg.Pool, dispatch: DeviceDispatch, log: Logger }): RolloutRunner {
  const { pool, dispatch, log } = deps
  let closed = false
  let running: Promise<void> | undefined

  // The step budget of a rate-limited rollout, taken from the token bucket
  // on its row (migration 005), so that the rate holds across replicas: each
  // grant moves rate_paid_until forward by n / rate under the row's lock.
  // At most one second's worth (and one step) can be taken at once.
  async function grant (id: string, max: number): Promise<number> {
    const { rows } = await pool.query<{ n: number }>(
      `WITH r AS (
         SELECT id, rate_per_second::float8 AS rate,
                greatest(coalesce(rate_paid_until, now() - interval '1 second'),
                         now() - make_interval(secs => least(rate_per_second, $2)::float8 / rate_per_second)) AS paid
           FROM rollouts WHERE id = $1 AND status = 'running' AND rate_per_second IS NOT NULL FOR UPDATE),
       g AS (SELECT id, paid, rate, least($2, floor(extract(epoch FROM now() - paid) * rate))::int AS n FROM r)
       UPDATE rollouts SET rate_paid_until = g.paid + make_interval(secs => g.n / g.rate)
         FROM g WHERE rollouts.id = g.id AND g.n > 0 -- no row version when nothing is granted
       RETURNING g.n`, [id, max])
    return rows[0]?.n ?? 0
  }

  async function step (r: { id: string, config: unknown, rate_per_second: number | null }): Promise<number> {
    const budget = r.rate_per_second === null ? UNBOUNDED_STEP : await grant(r.id, UNBOUNDED_STEP)
    if (budget === 0) return 0
    const { rows } = await pool.query<{ device_id: string, version: number }>(
      `WITH t AS (
         SELECT device_id FROM rollout_targets WHERE rollout_id = $1 AND pushed_at IS NULL
            -- a pause or cancel takes effect at the next step
            AND EXISTS (SELECT 1 FROM rollouts WHERE id = $1 AND status = 'running')
          ORDER BY device_id LIMIT $2 FOR UPDATE SKIP LOCKED),
       c AS (
         INSERT INTO device_configs (device_id, desired_version, desired_config, desired_at)
         SELECT device_id, 1, $3, now() FROM t
         ON CONFLICT (device_id) DO UPDATE
           SET desired_version = device_configs.desired_version + 1, desired_config = EXCLUDED.desired_config, desired_at = now()
         RETURNING device_id, desired_version)
       UPDATE rollout_targets AS rt SET version = c.desired_version, pushed_at = now()
         FROM c WHERE rt.rollout_id = $1 AND rt.device_id = c.device_id
       RETURNING rt.device_id, rt.version`,
      [r.id, budget, JSON.stringify(r.config)])
    await Promise.all(rows.map((t) => dispatch.deliver(t.device_id, topics.config(t.device_id), { version: t.version, config: r.config })))
    return rows.length
  }

  async function tick (): Promise<void> {
    const { rows } = await pool.query<{ id: string, config: unknown, rate_per_second: number | null, left: boolean }>(
      `SELECT r.id, r.config, r.rate_per_second,
              EXISTS (SELECT 1 FROM rollout_targets t WHERE t.rollout_id = r.id AND t.pushed_at IS NULL) AS left
         FROM rollouts r WHERE r.status = 'running'`)
    for (const r of rows) {
      if (closed) return
      if (!r.left) {
        await pool.query('UPDATE rollouts SET status = \'completed\', updated_at = now() WHERE id = $1 AND status = \'running\'', [r.id])
        log.info({ rollout: r.id }, 'rollout pushed to every target')
        continue
      }
      // One step per rollout per tick: several rollouts progress together,
      // and a pause or cancel is seen within a tick.
      await step(r)
    }
  }

  let timer: NodeJS.Timeout | undefined

  async function get (id: string): Promise<Rollout | undefined> {
    if (!isUuid(id)) return undefined
    const { rows } = await pool.query<{ id: string, selector: Record<string, string>, config: unknown, rate_per_second: number | null, status: RolloutStatus, created_at: Date, updated_at: Date, targeted: string, pushed: string, in_sync: string }>(
      `SELECT r.*,
              (SELECT count(*) FROM rollout_targets t WHERE t.rollout_id = r.id) AS targeted,
              (SELECT count(*) FROM rollout_targets t WHERE t.rollout_id = r.id AND t.pushed_at IS NOT NULL) AS pushed,
              (SELECT count(*) FROM rollout_targets t JOIN device_configs c ON c.device_id = t.device_id
                WHERE t.rollout_id = r.id AND t.version IS NOT NULL AND c.reported_version >= t.version) AS in_sync
         FROM rollouts r WHERE r.id = $1`, [id])
    const r = rows[0]
    if (!r) return undefined
    const targeted = Number(r.targeted); const inSync = Number(r.in_sync)
    return {
      id: r.id,
      selector: r.selector,
      config: r.config,
      ratePerSecond: r.rate_per_second,
      status: r.status,
      createdAt: r.created_at,
      updatedAt: r.updated_at,
      counts: { targeted, pushed: Number(r.pushed), inSync, pending: targeted - inSync }
    }
  }

  return {
    async create (selector, config, ratePerSecond) {
      const id = randomUUID()
      // The rollout and its targets appear together: a tick on any replica
      // never sees a running rollout with no targets and completes it.
      await withTransaction(pool, async (client) => {
        await client.query('INSERT INTO rollouts (id, selector, config, rate_per_second, status) VALUES ($1, $2, $3, $4, \'running\')',
          [id, JSON.stringify(selector), JSON.stringify(config), ratePerSecond])
        await client.query('INSERT INTO rollout_targets (rollout_id, device_id) SELECT $1, id FROM devices WHERE labels @> $2 AND disabled_at IS NULL',
          [id, JSON.stringify(selector)])
      })
      return (await get(id))!
    },
    get,
    async setStatus (id, action) {
      const from = { pause: ['running'], resume: ['paused'], cancel: ['running', 'paused'] }[action]
      const to = { pause: 'paused', resume: 'running', cancel: 'cancelled' }[action]
      // Not a UUID: no such rollout (PostgreSQL would refuse the cast).
      if (!isUuid(id)) throw notFound(`rollout ${id}`)
      const { rowCount } = await pool.query('UPDATE rollouts SET status = $2, updated_at = now() WHERE id = $1 AND status = ANY($3)', [id, to, from])
      const r = await get(id)
      if (!r) throw notFound(`rollout ${id}`)
      if (rowCount !== 1) throw new DomainError('invalid_transition', `cannot ${action} a rollout that is ${r.status}`)
      return r
    },
    start () {
      timer ??= setInterval(() => {
        if (running || closed) return
        running = tick().catch((err: unknown) => { log.warn({ err: { message: (err as Error).message } }, 'rollout step failed; retrying') })
          .finally(() => { running = undefined })
      }, TICK_MS)
      timer.unref()
    },
    async close () {
      closed = true
      clearInterval(timer)
      await running
    }
  }
}

// Fleet rollouts (issue 3, issue 13): set the desired config of — or send
// one command to — every device matching a label selector, at a given rate.
// Targets are fixed when the rollout is created; each step claims the next
// targets with FOR UPDATE SKIP LOCKED and, in the same statement, bumps
// their desired version (keeping it in config_versions) or creates their
// command, then commits the step's events and delivers. Several replicas
// can run one rollout without pushing a device twice, and a restarted
// process carries on where the rollout stood.
//
// Each target is in one state: pending (not pushed), delivered (pushed, no
// answer yet), applied (its config version, or a later one, reported
// applied; its command succeeded), failed (its version reported failed; its
// command failed), expired (its command expired, or was cancelled, without
// a result). A rollout with maxFailures or maxFailureRatio is checked before
// each step: once failures (failed + expired) exceed maxFailures, or their
// share of the finished targets (applied + failed + expired) exceeds
// maxFailureRatio, it pauses itself with the reason, and pushes nothing more.
import { randomUUID } from 'node:crypto'
import type pg from 'pg'
import type { Logger } from 'pino'
import { SYSTEM_ACTOR, withChanges, type Actor } from './change-recorder.js'
import type { CommandStore } from './command-store.js'
import type { DeviceDispatch } from './dispatch.js'
import { DomainError, notFound } from './domain-error.js'
import type { EventHub } from './fleet-events.js'
import { topics } from './topics.js'
import { isUuid } from './uuid.js'

export type RolloutStatus = 'running' | 'paused' | 'cancelled' | 'completed'
export type RolloutKind = 'config' | 'command'
export interface RolloutCommand { name: string, params: Record<string, unknown>, ttlSeconds: number }

export interface RolloutCounts {
  targeted: number
  /** Not pushed yet. */
  pending: number
  /** Pushed, no answer yet (a command queued or sent). */
  delivered: number
  applied: number
  failed: number
  expired: number
  /** delivered + applied + failed + expired (kept from issue 3). */
  pushed: number
  /** Same as applied (kept from issue 3). */
  inSync: number
}

export interface Rollout {
  id: string
  kind: RolloutKind
  selector: Record<string, string>
  config: unknown
  command: RolloutCommand | null
  ratePerSecond: number | null
  maxFailures: number | null
  maxFailureRatio: number | null
  status: RolloutStatus
  /** Why it paused itself; null when running or paused by an operator. */
  pauseReason: string | null
  createdAt: Date
  updatedAt: Date
  counts: RolloutCounts
}

export interface Thresholds { maxFailures?: number | null, maxFailureRatio?: number | null }

export interface NewRollout extends Thresholds {
  selector: Record<string, string>
  /** Exactly one of config and command. */
  config?: unknown
  command?: RolloutCommand
  ratePerSecond: number | null
}

export interface RolloutRunner {
  /** Creates a rollout (audited as rollout.create by `actor`). */
  create (spec: NewRollout, actor: Actor): Promise<Rollout>
  get (id: string): Promise<Rollout | undefined>
  /** Newest first; `after` is the [created_at text, id] of the last rollout of the previous page. */
  list (opts: { status?: RolloutStatus, limit: number, after?: [string, string] }): Promise<Array<Rollout & { cursor: [string, string] }>>
  /** A rollout's targets in device id order, those after `after`, in one state if given; undefined for an unknown rollout. */
  targets (id: string, opts: { state?: TargetState, limit: number, after?: string }): Promise<RolloutTarget[] | undefined>
  /** How many devices a rollout with this selector would target now (enabled devices matching it). */
  preview (selector: Record<string, string>): Promise<number>
  /**
   * not_found for an unknown rollout; invalid_transition when its status
   * does not allow the action. A resume may change the thresholds (null
   * removes one); they are checked again before the next step.
   */
  setStatus (id: string, action: 'pause' | 'resume' | 'cancel', actor: Actor, thresholds?: Thresholds): Promise<Rollout>
  /** Starts pushing (once the schema exists and devices can be reached). */
  start (): void
  close (): Promise<void>
}

export interface RolloutRunnerDeps {
  pool: pg.Pool
  dispatch: DeviceDispatch
  hub: EventHub
  /** Marks the commands of a command rollout sent once delivered. */
  commands: Pick<CommandStore, 'markSent'>
  log: Logger
  /** A rollout paused itself (for a metric). */
  onAutoPause? (): void
}

const TICK_MS = 100
const UNBOUNDED_STEP = 2000
/** At most one progress event per rollout per this many ms (any replica). */
const PROGRESS_MS = 1000
/** Longest gap between two threshold checks of a running rollout. */
const CHECK_MAX_GAP_MS = 1000

interface RolloutRow {
  id: string
  kind: RolloutKind
  selector: Record<string, string>
  config: unknown
  command: RolloutCommand | null
  rate_per_second: number | null
  max_failures: number | null
  max_failure_ratio: number | null
  status: RolloutStatus
  pause_reason: string | null
  created_at: Date
  updated_at: Date
}

/** The state of a rollout target `t` (LEFT JOIN commands `c` ON its command). */
const TARGET_STATE = `CASE WHEN t.pushed_at IS NULL THEN 'pending'
                           WHEN t.command_id IS NOT NULL THEN
                             CASE c.status WHEN 'succeeded' THEN 'applied' WHEN 'failed' THEN 'failed'
                                           WHEN 'expired' THEN 'expired' WHEN 'cancelled' THEN 'expired' ELSE 'delivered' END
                           ELSE coalesce(t.outcome, 'delivered') END`

export const TARGET_STATES = ['pending', 'delivered', 'applied', 'failed', 'expired'] as const
export type TargetState = typeof TARGET_STATES[number]

/** One device of a rollout. */
export interface RolloutTarget {
  deviceId: string
  state: TargetState
  /** Config rollouts: the desired version the rollout gave it (null until pushed). */
  version: number | null
  /** Command rollouts: the command it got (null until pushed). */
  commandId: string | null
  pushedAt: Date | null
  /** A config target that failed: the device's error text, while it is the device's last report. */
  error: string | null
}

const EMPTY: RolloutCounts = { targeted: 0, pending: 0, delivered: 0, applied: 0, failed: 0, expired: 0, pushed: 0, inSync: 0 }

/** The reason a rollout must pause itself, or undefined. */
export function thresholdCrossed (limits: { maxFailures: number | null, maxFailureRatio: number | null }, c: RolloutCounts): string | undefined {
  const failures = c.failed + c.expired
  const finished = c.applied + failures
  if (limits.maxFailures !== null && failures > limits.maxFailures) return `${failures} failures exceeded maxFailures ${limits.maxFailures}`
  if (limits.maxFailureRatio !== null && finished > 0 && failures / finished > limits.maxFailureRatio) {
    return `${failures} of ${finished} finished targets failed (${(failures / finished).toFixed(2)}), over maxFailureRatio ${limits.maxFailureRatio}`
  }
  return undefined
}

export function createRolloutRunner (deps: RolloutRunnerDeps): RolloutRunner {
  const { pool, dispatch, hub, log } = deps
  let closed = false
  let running: Promise<void> | undefined
  // The counts of the last progress event this replica emitted, per rollout
  // (no event when nothing changed).
  const lastProgress = new Map<string, string>()

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

  // The next targets of a running rollout, claimed by this step: a pause or
  // cancel takes effect at the next step.
  const CLAIM = `t AS (
    SELECT device_id FROM rollout_targets WHERE rollout_id = $1 AND pushed_at IS NULL
       AND EXISTS (SELECT 1 FROM rollouts WHERE id = $1 AND status = 'running')
     ORDER BY device_id LIMIT $2 FOR UPDATE SKIP LOCKED)`

  async function configStep (r: RolloutRow, budget: number): Promise<number> {
    const pushed = await withChanges({ pool, hub }, SYSTEM_ACTOR, async (client, rec) => {
      const { rows } = await client.query<{ device_id: string, version: number }>(
        `WITH ${CLAIM},
         c AS (
           INSERT INTO device_configs (device_id, desired_version, desired_config, desired_at)
           SELECT device_id, 1, $3, now() FROM t
           ON CONFLICT (device_id) DO UPDATE
             SET desired_version = device_configs.desired_version + 1, desired_config = EXCLUDED.desired_config, desired_at = now()
           RETURNING device_id, desired_version, desired_config, desired_at),
         h AS (
           -- Every desired version is kept, set by whoever created the rollout.
           INSERT INTO config_versions (device_id, version, config, set_at, set_by_id, set_by_name, source, rollout_id)
           SELECT c.device_id, c.desired_version, c.desired_config, c.desired_at, r.created_by_id, r.created_by_name, 'rollout', r.id
             FROM c CROSS JOIN rollouts r WHERE r.id = $1)
         UPDATE rollout_targets AS rt SET version = c.desired_version, pushed_at = now(), outcome = NULL
           FROM c WHERE rt.rollout_id = $1 AND rt.device_id = c.device_id
         RETURNING rt.device_id, rt.version`,
        [r.id, budget, JSON.stringify(r.config)])
      // One multi-row insert for the step's events (change-recorder.ts).
      for (const t of rows) rec.event({ kind: 'config', type: 'desired', deviceId: t.device_id, data: { version: t.version, source: 'rollout', rolloutId: r.id } })
      return rows
    })
    await Promise.all(pushed.map((t) => dispatch.deliver(t.device_id, topics.config(t.device_id), { version: t.version, config: r.config })))
    return pushed.length
  }

  async function commandStep (r: RolloutRow, budget: number): Promise<number> {
    const cmd = r.command!
    // The command is created in the statement that claims its target (the
    // commands table of migration 002, as devices/command-store.ts creates
    // them): a crash or a second replica can neither lose nor double it.
    const created = await withChanges({ pool, hub }, SYSTEM_ACTOR, async (client, rec) => {
      const { rows } = await client.query<{ device_id: string, id: string, name: string, params: unknown, expires_at: Date }>(
        `WITH ${CLAIM},
         c AS (
           INSERT INTO commands (id, device_id, name, params, status, expires_at, correlation_id)
           SELECT gen_random_uuid(), device_id, $3, $4, 'queued', now() + make_interval(secs => $5), $1::text FROM t
           RETURNING id, device_id, name, params, expires_at)
         UPDATE rollout_targets AS rt SET command_id = c.id, pushed_at = now()
           FROM c WHERE rt.rollout_id = $1 AND rt.device_id = c.device_id
         RETURNING rt.device_id, c.id, c.name, c.params, c.expires_at`,
        [r.id, budget, cmd.name, JSON.stringify(cmd.params), cmd.ttlSeconds])
      for (const c of rows) rec.event({ kind: 'command', type: 'queued', deviceId: c.device_id, data: { commandId: c.id, name: c.name, rolloutId: r.id } })
      return rows
    })
    const sent: string[] = []
    await Promise.all(created.map(async (c) => {
      const message = { id: c.id, name: c.name, params: c.params, expiresAt: c.expires_at.toISOString() }
      if (await dispatch.deliver(c.device_id, topics.command(c.device_id, c.id), message)) sent.push(c.id)
    }))
    await deps.commands.markSent(sent)
    return created.length
  }

  async function step (r: RolloutRow): Promise<number> {
    const budget = r.rate_per_second === null ? UNBOUNDED_STEP : await grant(r.id, UNBOUNDED_STEP)
    if (budget === 0) return 0
    return r.kind === 'command' ? await commandStep(r, budget) : await configStep(r, budget)
  }

  async function countsOf (ids: string[]): Promise<Map<string, RolloutCounts>> {
    if (ids.length === 0) return new Map()
    const { rows } = await pool.query<{ rollout_id: string, targeted: number, pending: number, delivered: number, applied: number, failed: number, expired: number }>(
      `SELECT rollout_id, count(*)::int AS targeted,
              count(*) FILTER (WHERE s = 'pending')::int AS pending, count(*) FILTER (WHERE s = 'delivered')::int AS delivered,
              count(*) FILTER (WHERE s = 'applied')::int AS applied, count(*) FILTER (WHERE s = 'failed')::int AS failed,
              count(*) FILTER (WHERE s = 'expired')::int AS expired
         FROM (SELECT t.rollout_id,
                      ${TARGET_STATE} AS s
                 FROM rollout_targets t LEFT JOIN commands c ON c.id = t.command_id
                WHERE t.rollout_id = ANY($1::uuid[])) x
        GROUP BY rollout_id`, [ids])
    const out = new Map<string, RolloutCounts>()
    for (const r of rows) {
      const pushed = r.delivered + r.applied + r.failed + r.expired
      out.set(r.rollout_id, { targeted: r.targeted, pending: r.pending, delivered: r.delivered, applied: r.applied, failed: r.failed, expired: r.expired, pushed, inSync: r.applied })
    }
    return out
  }

  async function complete (r: RolloutRow): Promise<void> {
    const counts = (await countsOf([r.id])).get(r.id) ?? EMPTY
    const done = await withChanges({ pool, hub }, SYSTEM_ACTOR, async (client, rec) => {
      const { rowCount } = await client.query('UPDATE rollouts SET status = \'completed\', updated_at = now() WHERE id = $1 AND status = \'running\'', [r.id])
      if (rowCount === 1) rec.event({ kind: 'rollout', type: 'completed', data: { rolloutId: r.id, counts } })
      return rowCount === 1
    })
    lastProgress.delete(r.id)
    if (done) log.info({ rollout: r.id }, 'rollout pushed to every target')
  }

  async function autoPause (r: RolloutRow, reason: string, counts: RolloutCounts): Promise<void> {
    const paused = await withChanges({ pool, hub }, SYSTEM_ACTOR, async (client, rec) => {
      const { rowCount } = await client.query(
        'UPDATE rollouts SET status = \'paused\', pause_reason = $2, updated_at = now() WHERE id = $1 AND status = \'running\'', [r.id, reason])
      if (rowCount === 1) rec.event({ kind: 'rollout', type: 'paused', data: { rolloutId: r.id, reason, automatic: true, counts } })
      return rowCount === 1
    })
    if (paused) {
      deps.onAutoPause?.()
      log.warn({ rollout: r.id, reason, counts }, 'rollout paused itself: failure threshold crossed')
    }
  }

  async function progress (id: string, counts: RolloutCounts): Promise<void> {
    const key = JSON.stringify(counts)
    if (lastProgress.get(id) === key) return
    // Gated on the rollout's row, so that several replicas running it emit
    // about one event per PROGRESS_MS between them (a tenth less, for the
    // jitter of this replica's own timer).
    const emitted = await withChanges({ pool, hub }, SYSTEM_ACTOR, async (client, rec) => {
      const { rowCount } = await client.query(
        `UPDATE rollouts SET progress_at = now() WHERE id = $1 AND status = 'running'
            AND (progress_at IS NULL OR progress_at <= now() - make_interval(secs => $2::float8 / 1000))`, [id, PROGRESS_MS * 0.9])
      if (rowCount === 1) rec.event({ kind: 'rollout', type: 'progress', data: { rolloutId: id, counts } })
      return rowCount === 1
    })
    if (emitted) lastProgress.set(id, key)
  }

  const progressDue = new Map<string, number>()
  // When a rollout with thresholds may be checked (and stepped) again.
  const nextCheck = new Map<string, number>()

  async function tick (): Promise<void> {
    const { rows } = await pool.query<RolloutRow & { left: boolean }>(
      `SELECT r.*, EXISTS (SELECT 1 FROM rollout_targets t WHERE t.rollout_id = r.id AND t.pushed_at IS NULL) AS left
         FROM rollouts r WHERE r.status = 'running'`)
    for (const id of new Set([...progressDue.keys(), ...nextCheck.keys()])) {
      if (!rows.some((r) => r.id === id)) { progressDue.delete(id); lastProgress.delete(id); nextCheck.delete(id) }
    }
    for (const r of rows) {
      if (closed) return
      if (!r.left) { await complete(r); continue }
      let counts: RolloutCounts | undefined
      // Checked before every step: once crossed, nothing more is pushed.
      // The check counts every target (about 75 ms for 50,000 on a busy
      // laptop), so a large rollout's checks, and its steps with them, are
      // spaced to spend at most about a tenth of the time on it (at most a
      // second apart: the token bucket keeps a second's worth, so the rate
      // still holds).
      if (r.max_failures !== null || r.max_failure_ratio !== null) {
        if (Date.now() < (nextCheck.get(r.id) ?? 0)) continue
        const started = Date.now()
        counts = (await countsOf([r.id])).get(r.id) ?? EMPTY
        nextCheck.set(r.id, Date.now() + Math.min(CHECK_MAX_GAP_MS, 10 * (Date.now() - started)))
        const reason = thresholdCrossed({ maxFailures: r.max_failures, maxFailureRatio: r.max_failure_ratio }, counts)
        if (reason) { await autoPause(r, reason, counts); continue }
      }
      // One step per rollout per tick: several rollouts progress together,
      // and a pause or cancel is seen within a tick.
      const pushed = await step(r)
      if (Date.now() >= (progressDue.get(r.id) ?? 0)) {
        progressDue.set(r.id, Date.now() + PROGRESS_MS)
        if (pushed > 0 || counts === undefined) counts = (await countsOf([r.id])).get(r.id) ?? EMPTY
        await progress(r.id, counts)
      }
    }
  }

  let timer: NodeJS.Timeout | undefined

  function toRollout (r: RolloutRow, counts: RolloutCounts | undefined): Rollout {
    return {
      id: r.id,
      kind: r.kind,
      selector: r.selector,
      config: r.kind === 'config' ? r.config : null,
      command: r.command,
      ratePerSecond: r.rate_per_second,
      maxFailures: r.max_failures,
      maxFailureRatio: r.max_failure_ratio,
      status: r.status,
      pauseReason: r.pause_reason,
      createdAt: r.created_at,
      updatedAt: r.updated_at,
      counts: counts ?? EMPTY
    }
  }

  async function get (id: string): Promise<Rollout | undefined> {
    if (!isUuid(id)) return undefined
    const { rows } = await pool.query<RolloutRow>('SELECT * FROM rollouts WHERE id = $1', [id])
    const r = rows[0]
    if (!r) return undefined
    return toRollout(r, (await countsOf([id])).get(id))
  }

  return {
    async create (spec, actor) {
      const id = randomUUID()
      const kind: RolloutKind = spec.command ? 'command' : 'config'
      // The rollout and its targets appear together: a tick on any replica
      // never sees a running rollout with no targets and completes it.
      await withChanges({ pool, hub }, actor, async (client, rec) => {
        await client.query(
          `INSERT INTO rollouts (id, kind, selector, config, command, rate_per_second, max_failures, max_failure_ratio, status, created_by_id, created_by_name)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'running', $9, $10)`,
          [id, kind, JSON.stringify(spec.selector), kind === 'config' ? JSON.stringify(spec.config) : null, spec.command ? JSON.stringify(spec.command) : null,
            spec.ratePerSecond, spec.maxFailures ?? null, spec.maxFailureRatio ?? null, actor.id, actor.name])
        const { rowCount } = await client.query('INSERT INTO rollout_targets (rollout_id, device_id) SELECT $1, id FROM devices WHERE labels @> $2 AND disabled_at IS NULL',
          [id, JSON.stringify(spec.selector)])
        const targeted = rowCount ?? 0
        rec.audit({
          action: 'rollout.create',
          targetType: 'rollout',
          targetId: id,
          after: { kind, selector: spec.selector, targeted, ratePerSecond: spec.ratePerSecond, maxFailures: spec.maxFailures ?? null, maxFailureRatio: spec.maxFailureRatio ?? null, ...(spec.command ? { command: spec.command.name } : {}) }
        })
        rec.event({ kind: 'rollout', type: 'created', data: { rolloutId: id, kind, counts: { ...EMPTY, targeted, pending: targeted } } })
      })
      return (await get(id))!
    },
    get,
    async list ({ status, limit, after }) {
      const { rows } = await pool.query<RolloutRow & { created_key: string }>(
        `SELECT r.*, r.created_at::text AS created_key FROM rollouts r
          WHERE ($1::text IS NULL OR status = $1)
            AND ($2::timestamptz IS NULL OR (created_at, id) < ($2::timestamptz, $3::uuid))
          ORDER BY created_at DESC, id DESC LIMIT $4`,
        [status ?? null, after?.[0] ?? null, after?.[1] ?? null, limit])
      const counts = await countsOf(rows.map((r) => r.id))
      return rows.map((r) => ({ ...toRollout(r, counts.get(r.id)), cursor: [r.created_key, r.id] as [string, string] }))
    },
    async targets (id, { state, limit, after }) {
      if (!isUuid(id)) return undefined
      const { rows } = await pool.query<{ device_id: string, s: TargetState, version: number | null, command_id: string | null, pushed_at: Date | null, error: string | null }>(
        `SELECT x.device_id, x.s, x.version, x.command_id, x.pushed_at,
                CASE WHEN x.s = 'failed' AND x.command_id IS NULL THEN
                  (SELECT reported_error FROM device_configs d WHERE d.device_id = x.device_id AND d.reported_version = x.version AND d.reported_status = 'failed') END AS error
           FROM (SELECT t.device_id, t.version, t.command_id, t.pushed_at, ${TARGET_STATE} AS s
                   FROM rollout_targets t LEFT JOIN commands c ON c.id = t.command_id
                  WHERE t.rollout_id = $1 AND ($3::text IS NULL OR t.device_id > $3)) x
          WHERE ($2::text IS NULL OR x.s = $2)
          ORDER BY x.device_id LIMIT $4`, [id, state ?? null, after ?? null, limit])
      if (rows.length === 0 && !(await pool.query('SELECT 1 FROM rollouts WHERE id = $1', [id])).rows[0]) return undefined
      return rows.map((r) => ({ deviceId: r.device_id, state: r.s, version: r.version, commandId: r.command_id, pushedAt: r.pushed_at, error: r.error }))
    },
    async preview (selector) {
      const { rows } = await pool.query<{ n: number }>('SELECT count(*)::int AS n FROM devices WHERE labels @> $1 AND disabled_at IS NULL', [JSON.stringify(selector)])
      return rows[0]!.n
    },
    async setStatus (id, action, actor, thresholds) {
      const from = { pause: ['running'], resume: ['paused'], cancel: ['running', 'paused'] }[action]
      const to = { pause: 'paused', resume: 'running', cancel: 'cancelled' }[action]
      const type = { pause: 'paused', resume: 'resumed', cancel: 'cancelled' }[action]
      // Not a UUID: no such rollout (PostgreSQL would refuse the cast).
      if (!isUuid(id)) throw notFound(`rollout ${id}`)
      await withChanges({ pool, hub }, actor, async (client, rec) => {
        const { rows } = await client.query<{ status: RolloutStatus, max_failures: number | null, max_failure_ratio: number | null, pause_reason: string | null }>(
          'SELECT status, max_failures, max_failure_ratio, pause_reason FROM rollouts WHERE id = $1 FOR UPDATE', [id])
        const before = rows[0]
        if (!before) throw notFound(`rollout ${id}`)
        if (!from.includes(before.status)) throw new DomainError('invalid_transition', `cannot ${action} a rollout that is ${before.status}`)
        const maxFailures = thresholds?.maxFailures !== undefined ? thresholds.maxFailures : before.max_failures
        const maxFailureRatio = thresholds?.maxFailureRatio !== undefined ? thresholds.maxFailureRatio : before.max_failure_ratio
        await client.query(
          'UPDATE rollouts SET status = $2, pause_reason = NULL, max_failures = $3, max_failure_ratio = $4, updated_at = now() WHERE id = $1',
          [id, to, maxFailures, maxFailureRatio])
        const limits = (m: number | null, r: number | null) => ({ maxFailures: m, maxFailureRatio: r })
        rec.audit({
          action: `rollout.${action}`,
          targetType: 'rollout',
          targetId: id,
          before: { status: before.status, ...(before.pause_reason ? { pauseReason: before.pause_reason } : {}), ...limits(before.max_failures, before.max_failure_ratio) },
          after: { status: to, ...limits(maxFailures, maxFailureRatio) }
        })
        rec.event({ kind: 'rollout', type, data: { rolloutId: id } })
      })
      return (await get(id))!
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

import type pg from 'pg'
import type { ChangeRecorder, Queryable } from './change-recorder.js'
import { configStateSql, type ConfigStateName } from './config-store.js'
import { generateDeviceId, isValidDeviceId } from './device-id.js'
import { generateSecret, hashSecret } from './device-secret.js'
import { DomainError, found, notFound } from './domain-error.js'

export interface NewDevice {
  id?: string
  name?: string | null
  labels?: Record<string, string>
}

export interface CreatedDevice { id: string, secret: string }

export interface DeviceCredentials {
  id: string
  secretHash: string
  disabled: boolean
}

export interface DeviceView {
  id: string
  name: string | null
  labels: Record<string, string>
  disabled: boolean
  createdAt: Date
  updatedAt: Date
  online: boolean
  connectedAt: Date | null
  lastSeenAt: Date | null
  config: { desiredVersion: number | null, reportedVersion: number | null, inSync: boolean }
  configState: ConfigState
}

/**
 * Where a device's configuration stands (issue 13): none (never set),
 * in_sync (the device reported the desired version applied), pending (not
 * reported yet), failed (the device reported that applying the desired
 * version failed; a later successful report clears it).
 */
export type ConfigState = ConfigStateName
export const CONFIG_STATES: ConfigState[] = ['none', 'in_sync', 'pending', 'failed']

export interface DeviceQuery {
  labels?: Record<string, string>
  online?: boolean
  /** Ids starting with this string. */
  idPrefix?: string
  configState?: ConfigState
  limit: number
  after?: string
}

/** What an audit entry shows of a device (never its secret). */
export interface DeviceSummary { id: string, name: string | null, labels: Record<string, string>, disabled: boolean }

/**
 * A store change made inside a change's transaction (devices/change-recorder.ts):
 * the statements run on `client`; cached credentials are dropped after COMMIT.
 */
export interface InChange { client: Queryable, rec: Pick<ChangeRecorder, 'afterCommit'> }

export type BulkAction = 'disable' | 'enable' | 'delete'
/** The devices a bulk action applies to: a list of ids, or a label selector. */
export type BulkTarget = { ids: string[] } | { labels: Record<string, string> }
export interface BulkResult { matched: number, changed: string[] }

type CreateResult = CreatedDevice | { id: string, error: string }

// Failures are DomainErrors: invalid_device_id and device_exists on create,
// not_found when update, remove or rotateSecret name no device. get()
// answers undefined instead: absence is an answer to a look-up.
// The mutating methods take an optional InChange: given, they run in the
// caller's transaction (an audited REST call); without it, on the pool (CLIs,
// tests).
export interface DeviceStore {
  create (device: NewDevice, tx?: InChange): Promise<CreatedDevice>
  /**
   * Creates many devices in chunks; yields each chunk's results (errors for
   * ids that exist). `run`, when given, wraps each chunk's statement (e.g.
   * in a transaction that also records the chunk's events and audit counts).
   */
  createMany (devices: NewDevice[] | { count: number, make (i: number): NewDevice }, chunk?: number,
    run?: (work: (q: Queryable) => Promise<CreateResult[]>) => Promise<CreateResult[]>): AsyncGenerator<CreateResult[]>
  get (id: string, q?: Queryable): Promise<DeviceView | undefined>
  /** The device's audit summary, its row locked until the transaction ends (undefined: no such device). */
  lockSummary (id: string, q: Queryable): Promise<DeviceSummary | undefined>
  list (q: DeviceQuery): Promise<DeviceView[]>
  update (id: string, patch: { name?: string | null, labels?: Record<string, string>, disabled?: boolean }, tx?: InChange): Promise<DeviceView>
  remove (id: string, tx?: InChange): Promise<void>
  /** Credentials of many devices in one query (the cache batches look-ups). */
  credentialsMany (ids: string[]): Promise<Map<string, DeviceCredentials>>
  setDisabled (id: string, disabled: boolean, tx?: InChange): Promise<boolean>
  rotateSecret (id: string, tx?: InChange): Promise<CreatedDevice>
  /** How many devices a bulk target names (counting stops past `max`). */
  countMatching (target: BulkTarget, max: number, q?: Queryable): Promise<number>
  /** Disables, enables or deletes the target's devices; `changed`: the ids whose state changed (deleted, newly disabled, newly enabled). */
  bulk (action: BulkAction, target: BulkTarget, tx?: InChange): Promise<BulkResult>
}

export interface DeviceStoreOptions {
  /** Called after a device's credentials changed (disabled, enabled, secret rotated) so caches drop them. */
  onCredentialsChanged? (id: string): void
  /** The same for many devices at once (bulk actions); default: onCredentialsChanged for each. */
  onCredentialsChangedMany? (ids: string[]): void
}

/** A device's config state as SQL over device_configs `c` (one definition with GET /v1/devices/{id}/config). */
export const CONFIG_STATE_SQL = configStateSql('c')

interface ViewRow {
  id: string,
  name: string | null,
  labels: Record<string, string>,
  disabled: boolean,
  created_at: Date,
  updated_at: Date,
  online: boolean,
  connected_at: Date | null,
  last_seen_at: Date | null,
  desired_version: number | null,
  reported_version: number | null,
  config_state: ConfigState
}

const VIEW = `SELECT d.id, d.name, d.labels, d.disabled_at IS NOT NULL AS disabled, d.created_at, d.updated_at,
                     d.online, d.connected_at, d.last_seen_at, c.desired_version, c.reported_version,
                     ${CONFIG_STATE_SQL} AS config_state
                FROM devices d LEFT JOIN device_configs c ON c.device_id = d.id`

/**
 * Each config state as plain conditions (the CASE of CONFIG_STATE_SQL, case
 * by case): written out so that PostgreSQL sees that 'pending' and 'failed'
 * imply the predicates of the partial indexes device_configs_pending_idx and
 * device_configs_failed_idx (migration 008) and walks those small indexes
 * instead of every device.
 */
const CONFIG_STATE_WHERE: Record<ConfigState, string> = {
  none: 'c.device_id IS NULL',
  in_sync: "c.reported_version = c.desired_version AND c.reported_status IS DISTINCT FROM 'failed'",
  pending: 'c.device_id IS NOT NULL AND c.reported_version IS DISTINCT FROM c.desired_version',
  failed: "c.reported_version = c.desired_version AND c.reported_status = 'failed'"
}

/** The WHERE clause of a bulk target, its parameter at $1. */
function targetClause (target: BulkTarget): [string, unknown] {
  return 'ids' in target ? ['id = ANY($1::text[])', target.ids] : ['labels @> $1::jsonb', JSON.stringify(target.labels)]
}

const toView = (r: ViewRow): DeviceView => ({
  id: r.id,
  name: r.name,
  labels: r.labels,
  disabled: r.disabled,
  createdAt: r.created_at,
  updatedAt: r.updated_at,
  online: r.online,
  connectedAt: r.connected_at,
  lastSeenAt: r.last_seen_at,
  config: { desiredVersion: r.desired_version, reportedVersion: r.reported_version, inSync: r.config_state === 'none' || r.config_state === 'in_sync' },
  configState: r.config_state
})

export function createDeviceStore (pool: pg.Pool, opts: DeviceStoreOptions = {}): DeviceStore {
  // In a change's transaction, caches drop the credentials only after COMMIT:
  // dropped earlier, a CONNECT in between would cache the old row again.
  const changed = (id: string, tx?: InChange) => {
    if (tx) tx.rec.afterCommit(() => opts.onCredentialsChanged?.(id))
    else opts.onCredentialsChanged?.(id)
  }
  const changedMany = (ids: string[], tx?: InChange) => {
    if (ids.length === 0) return
    const drop = () => {
      if (opts.onCredentialsChangedMany) opts.onCredentialsChangedMany(ids)
      else for (const id of ids) opts.onCredentialsChanged?.(id)
    }
    if (tx) tx.rec.afterCommit(drop)
    else drop()
  }
  return {
    async * createMany (devices, chunk = 2000, run = (work) => work(pool)) {
      // Generated lists are made chunk by chunk, not all up front.
      const count = Array.isArray(devices) ? devices.length : devices.count
      const at = (i: number) => Array.isArray(devices) ? devices[i]! : devices.make(i)
      const seen = new Set<string>()
      for (let i = 0; i < count; i += chunk) {
        const part = Array.from({ length: Math.min(chunk, count - i) }, (_, k) => at(i + k))
          .map((d) => ({ ...d, id: d.id ?? generateDeviceId(), secret: generateSecret() }))
        const bad = part.filter((d) => !isValidDeviceId(d.id))
        // An id repeated within the request is created once; later copies are device_exists.
        const repeated = part.filter((d) => isValidDeviceId(d.id) && (seen.has(d.id) || !seen.add(d.id)))
        const good = part.filter((d) => isValidDeviceId(d.id) && !repeated.includes(d))
        yield await run(async (q) => {
          const { rows } = await q.query<{ id: string }>(
            `INSERT INTO devices (id, secret_hash, name, labels)
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::jsonb[]) ON CONFLICT (id) DO NOTHING RETURNING id`,
            [good.map((d) => d.id), good.map((d) => hashSecret(d.secret)), good.map((d) => d.name ?? null), good.map((d) => JSON.stringify(d.labels ?? {}))])
          const inserted = new Set(rows.map((r) => r.id))
          return [
            ...bad.map((d) => ({ id: d.id, error: 'invalid_device_id' })),
            ...repeated.map((d) => ({ id: d.id, error: 'device_exists' })),
            ...good.map((d) => inserted.has(d.id) ? { id: d.id, secret: d.secret } : { id: d.id, error: 'device_exists' })
          ]
        })
      }
    },

    async get (id, q = pool) {
      const { rows } = await q.query<ViewRow>(`${VIEW} WHERE d.id = $1`, [id])
      return rows[0] ? toView(rows[0]) : undefined
    },

    async lockSummary (id, q) {
      const { rows } = await q.query<DeviceSummary>(
        'SELECT id, name, labels, disabled_at IS NOT NULL AS disabled FROM devices WHERE id = $1 FOR UPDATE', [id])
      return rows[0]
    },

    async list (q) {
      // A page of 100 out of 100,000 devices answers in milliseconds (the
      // console, issue 13): each filter either walks the primary key in
      // list order from the cursor and stops at `limit`, or has its own
      // index (labels: GIN; online: partial; pending and failed configs:
      // partial, migration 008; the id prefix: LIKE on the primary key in
      // a C collation, on devices_id_pattern_idx in any other). The prefix
      // is a LIKE pattern (unnamed statements are planned with their
      // values, so PostgreSQL turns it into an index range) with its
      // wildcards escaped: `_` is allowed in device ids.
      const { rows } = await pool.query<ViewRow>(
        // The cursor is repeated on the joined table: PostgreSQL carries
        // equalities across a join, not ranges, and a merge join would
        // otherwise read device_configs from its first row on every page.
        `${VIEW} AND ($3::text IS NULL OR c.device_id > $3)
          WHERE ($1::jsonb IS NULL OR d.labels @> $1::jsonb) AND ($2::boolean IS NULL OR d.online = $2)
                 AND ($3::text IS NULL OR d.id > $3)
                 AND ${q.idPrefix !== undefined ? 'd.id LIKE $5' : '$5::text IS NULL'}
                 AND ${q.configState ? CONFIG_STATE_WHERE[q.configState] : 'true'}
               ORDER BY d.id LIMIT $4`,
        [q.labels ? JSON.stringify(q.labels) : null, q.online ?? null, q.after ?? null, q.limit,
          q.idPrefix !== undefined ? q.idPrefix.replace(/[\\%_]/g, '\\$&') + '%' : null])
      return rows.map(toView)
    },

    async update (id, patch, tx) {
      const db = tx?.client ?? pool
      const { rowCount } = await db.query(
        `UPDATE devices SET
           name = CASE WHEN $2 THEN $3 ELSE name END,
           labels = coalesce($4::jsonb, labels),
           disabled_at = CASE WHEN $5::boolean IS NULL THEN disabled_at WHEN $5 THEN coalesce(disabled_at, now()) ELSE NULL END,
           updated_at = now()
         WHERE id = $1`,
        [id, 'name' in patch, patch.name ?? null, patch.labels ? JSON.stringify(patch.labels) : null, patch.disabled ?? null])
      if (rowCount !== 1) throw notFound(`device ${id}`)
      if (patch.disabled !== undefined) changed(id, tx)
      // Deleted in between: as if the update had come second.
      return found(await this.get(id, db), `device ${id}`)
    },

    async remove (id, tx) {
      const { rowCount } = await (tx?.client ?? pool).query('DELETE FROM devices WHERE id = $1', [id])
      changed(id, tx)
      if (rowCount !== 1) throw notFound(`device ${id}`)
    },
    async create (device, tx) {
      const id = device.id ?? generateDeviceId()
      if (!isValidDeviceId(id)) throw new DomainError('invalid_device_id', `device id ${JSON.stringify(id)} is not a valid MQTT topic level (letters, digits, _ . : @ -, at most 128, starting with a letter or digit)`)
      const secret = generateSecret()
      try {
        await (tx?.client ?? pool).query('INSERT INTO devices (id, secret_hash, name, labels) VALUES ($1, $2, $3, $4)',
          [id, hashSecret(secret), device.name ?? null, JSON.stringify(device.labels ?? {})])
      } catch (err) {
        if ((err as { code?: string }).code === '23505') throw new DomainError('device_exists', `device ${id} already exists`)
        throw err
      }
      return { id, secret }
    },

    async credentialsMany (ids) {
      const { rows } = await pool.query<{ id: string, secret_hash: string, disabled: boolean }>(
        'SELECT id, secret_hash, disabled_at IS NOT NULL AS disabled FROM devices WHERE id = ANY($1::text[])', [ids])
      return new Map(rows.map((r) => [r.id, { id: r.id, secretHash: r.secret_hash, disabled: r.disabled }]))
    },

    async setDisabled (id, disabled, tx) {
      const { rowCount } = await (tx?.client ?? pool).query(
        'UPDATE devices SET disabled_at = CASE WHEN $2 THEN coalesce(disabled_at, now()) END, updated_at = now() WHERE id = $1', [id, disabled])
      changed(id, tx)
      return rowCount === 1
    },

    async rotateSecret (id, tx) {
      const secret = generateSecret()
      const { rowCount } = await (tx?.client ?? pool).query(
        'UPDATE devices SET secret_hash = $2, secret_rotated_at = now(), updated_at = now() WHERE id = $1', [id, hashSecret(secret)])
      changed(id, tx)
      if (rowCount !== 1) throw notFound(`device ${id}`)
      return { id, secret }
    },

    async countMatching (target, max, q = pool) {
      const [where, param] = targetClause(target)
      const { rows } = await q.query<{ n: number }>(`SELECT count(*)::int AS n FROM (SELECT 1 FROM devices WHERE ${where} LIMIT $2) m`, [param, max + 1])
      return rows[0]!.n
    },

    async bulk (action, target, tx) {
      const db = tx?.client ?? pool
      const [where, param] = targetClause(target)
      // One statement: the matching rows are locked in id order (as every
      // other multi-row writer does, so two bulk actions over overlapping
      // sets cannot deadlock) and joined to the change (a hash join: an
      // `id = ANY(array)` of 100,000 ids costs seconds).
      const change = {
        disable: 'UPDATE devices d SET disabled_at = now(), updated_at = now() FROM m WHERE d.id = m.id AND NOT m.disabled RETURNING d.id',
        enable: 'UPDATE devices d SET disabled_at = NULL, updated_at = now() FROM m WHERE d.id = m.id AND m.disabled RETURNING d.id',
        delete: 'DELETE FROM devices d USING m WHERE d.id = m.id RETURNING d.id'
      }[action]
      const { rows } = await db.query<{ matched: number, changed: string[] | null }>(
        `WITH m AS (SELECT id, disabled_at IS NOT NULL AS disabled FROM devices WHERE ${where} ORDER BY id FOR UPDATE),
              c AS (${change})
         SELECT (SELECT count(*)::int FROM m) AS matched, (SELECT array_agg(id ORDER BY id) FROM c) AS changed`, [param])
      const changedIds = rows[0]!.changed ?? []
      changedMany(changedIds, tx)
      return { matched: rows[0]!.matched, changed: changedIds }
    }
  }
}

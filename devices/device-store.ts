import type pg from 'pg'
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
}

export interface DeviceQuery { labels?: Record<string, string>, online?: boolean, limit: number, after?: string }

// Failures are DomainErrors: invalid_device_id and device_exists on create,
// not_found when update, remove or rotateSecret name no device. get()
// answers undefined instead: absence is an answer to a look-up.
export interface DeviceStore {
  create (device: NewDevice): Promise<CreatedDevice>
  /** Creates many devices in chunks; yields each chunk's results (errors for ids that exist). */
  createMany (devices: NewDevice[] | { count: number, make (i: number): NewDevice }, chunk?: number): AsyncGenerator<Array<CreatedDevice | { id: string, error: string }>>
  get (id: string): Promise<DeviceView | undefined>
  list (q: DeviceQuery): Promise<DeviceView[]>
  update (id: string, patch: { name?: string | null, labels?: Record<string, string>, disabled?: boolean }): Promise<DeviceView>
  remove (id: string): Promise<void>
  /** Credentials of many devices in one query (the cache batches look-ups). */
  credentialsMany (ids: string[]): Promise<Map<string, DeviceCredentials>>
  setDisabled (id: string, disabled: boolean): Promise<boolean>
  rotateSecret (id: string): Promise<CreatedDevice>
}

export interface DeviceStoreOptions {
  /** Called after a device's credentials changed (disabled, enabled, secret rotated) so caches drop them. */
  onCredentialsChanged? (id: string): void
}

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
  reported_version: number | null
}

const VIEW = `SELECT d.id, d.name, d.labels, d.disabled_at IS NOT NULL AS disabled, d.created_at, d.updated_at,
                     d.online, d.connected_at, d.last_seen_at, c.desired_version, c.reported_version
                FROM devices d LEFT JOIN device_configs c ON c.device_id = d.id`

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
  config: { desiredVersion: r.desired_version, reportedVersion: r.reported_version, inSync: r.desired_version === null || r.desired_version === r.reported_version }
})

export function createDeviceStore (pool: pg.Pool, opts: DeviceStoreOptions = {}): DeviceStore {
  const changed = (id: string) => opts.onCredentialsChanged?.(id)
  return {
    async * createMany (devices, chunk = 2000) {
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
        const { rows } = await pool.query<{ id: string }>(
          `INSERT INTO devices (id, secret_hash, name, labels)
           SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::jsonb[]) ON CONFLICT (id) DO NOTHING RETURNING id`,
          [good.map((d) => d.id), good.map((d) => hashSecret(d.secret)), good.map((d) => d.name ?? null), good.map((d) => JSON.stringify(d.labels ?? {}))])
        const inserted = new Set(rows.map((r) => r.id))
        yield [
          ...bad.map((d) => ({ id: d.id, error: 'invalid_device_id' })),
          ...repeated.map((d) => ({ id: d.id, error: 'device_exists' })),
          ...good.map((d) => inserted.has(d.id) ? { id: d.id, secret: d.secret } : { id: d.id, error: 'device_exists' })
        ]
      }
    },

    async get (id) {
      const { rows } = await pool.query<ViewRow>(`${VIEW} WHERE d.id = $1`, [id])
      return rows[0] ? toView(rows[0]) : undefined
    },

    async list (q) {
      const { rows } = await pool.query<ViewRow>(
        `${VIEW} WHERE ($1::jsonb IS NULL OR d.labels @> $1::jsonb) AND ($2::boolean IS NULL OR d.online = $2)
                 AND ($3::text IS NULL OR d.id > $3) ORDER BY d.id LIMIT $4`,
        [q.labels ? JSON.stringify(q.labels) : null, q.online ?? null, q.after ?? null, q.limit])
      return rows.map(toView)
    },

    async update (id, patch) {
      const { rowCount } = await pool.query(
        `UPDATE devices SET
           name = CASE WHEN $2 THEN $3 ELSE name END,
           labels = coalesce($4::jsonb, labels),
           disabled_at = CASE WHEN $5::boolean IS NULL THEN disabled_at WHEN $5 THEN coalesce(disabled_at, now()) ELSE NULL END,
           updated_at = now()
         WHERE id = $1`,
        [id, 'name' in patch, patch.name ?? null, patch.labels ? JSON.stringify(patch.labels) : null, patch.disabled ?? null])
      if (rowCount !== 1) throw notFound(`device ${id}`)
      if (patch.disabled !== undefined) changed(id)
      // Deleted in between: as if the update had come second.
      return found(await this.get(id), `device ${id}`)
    },

    async remove (id) {
      const { rowCount } = await pool.query('DELETE FROM devices WHERE id = $1', [id])
      changed(id)
      if (rowCount !== 1) throw notFound(`device ${id}`)
    },
    async create (device) {
      const id = device.id ?? generateDeviceId()
      if (!isValidDeviceId(id)) throw new DomainError('invalid_device_id', `device id ${JSON.stringify(id)} is not a valid MQTT topic level (letters, digits, _ . : @ -, at most 128, starting with a letter or digit)`)
      const secret = generateSecret()
      try {
        await pool.query('INSERT INTO devices (id, secret_hash, name, labels) VALUES ($1, $2, $3, $4)',
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

    async setDisabled (id, disabled) {
      const { rowCount } = await pool.query(
        'UPDATE devices SET disabled_at = CASE WHEN $2 THEN coalesce(disabled_at, now()) END, updated_at = now() WHERE id = $1', [id, disabled])
      changed(id)
      return rowCount === 1
    },

    async rotateSecret (id) {
      const secret = generateSecret()
      const { rowCount } = await pool.query(
        'UPDATE devices SET secret_hash = $2, secret_rotated_at = now(), updated_at = now() WHERE id = $1', [id, hashSecret(secret)])
      changed(id)
      if (rowCount !== 1) throw notFound(`device ${id}`)
      return { id, secret }
    }
  }
}

import type pg from 'pg'
import { generateDeviceId, isValidDeviceId } from './device-id.js'
import { generateSecret, hashSecret } from './device-secret.js'
import { DomainError } from './domain-error.js'

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

export interface DeviceStore {
  create (device: NewDevice): Promise<CreatedDevice>
  credentials (id: string): Promise<DeviceCredentials | undefined>
  setDisabled (id: string, disabled: boolean): Promise<boolean>
  rotateSecret (id: string): Promise<CreatedDevice | undefined>
}

export interface DeviceStoreOptions {
  /** Called after a device's credentials changed (disabled, enabled, secret rotated) so caches drop them. */
  onCredentialsChanged? (id: string): void
}

export function createDeviceStore (pool: pg.Pool, opts: DeviceStoreOptions = {}): DeviceStore {
  const changed = (id: string) => opts.onCredentialsChanged?.(id)
  return {
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

    async credentials (id) {
      const { rows } = await pool.query<{ id: string, secret_hash: string, disabled: boolean }>(
        'SELECT id, secret_hash, disabled_at IS NOT NULL AS disabled FROM devices WHERE id = $1', [id])
      const row = rows[0]
      return row ? { id: row.id, secretHash: row.secret_hash, disabled: row.disabled } : undefined
    },

    async setDisabled (id, disabled) {
      const { rowCount } = await pool.query(
        `UPDATE devices SET disabled_at = CASE WHEN $2 THEN coalesce(disabled_at, now()) END, updated_at = now() WHERE id = $1`, [id, disabled])
      changed(id)
      return rowCount === 1
    },

    async rotateSecret (id) {
      const secret = generateSecret()
      const { rowCount } = await pool.query(
        'UPDATE devices SET secret_hash = $2, secret_rotated_at = now(), updated_at = now() WHERE id = $1', [id, hashSecret(secret)])
      changed(id)
      return rowCount === 1 ? { id, secret } : undefined
    }
  }
}

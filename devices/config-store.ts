// Desired and reported configuration of a device, like a device shadow or
// twin. PostgreSQL is the source of truth: what the broker sends on
// devices/{id}/config always comes from here.
import type pg from 'pg'
import { ApiError, notFound } from './api-error.js'

export interface DeviceConfigState {
  desired: { version: number, config: unknown, updatedAt: Date } | null
  reported: { version: number, config: unknown, updatedAt: Date } | null
  inSync: boolean
}

/** The message a device receives on devices/{id}/config. */
export interface ConfigMessage { version: number, config: unknown }

interface Row {
  desired_version: number, desired_config: unknown, desired_at: Date
  reported_version: number | null, reported_config: unknown, reported_at: Date | null
}

function toState (r: Row | undefined): DeviceConfigState {
  if (!r) return { desired: null, reported: null, inSync: true }
  const reported = r.reported_version === null ? null : { version: r.reported_version, config: r.reported_config, updatedAt: r.reported_at! }
  return {
    desired: { version: r.desired_version, config: r.desired_config, updatedAt: r.desired_at },
    reported,
    inSync: reported !== null && reported.version === r.desired_version
  }
}

export interface ConfigStore {
  get (deviceId: string): Promise<DeviceConfigState>
  /** Stores a new desired version; `ifVersion` (0 = none yet) makes it conditional (409 on mismatch). */
  setDesired (deviceId: string, config: unknown, ifVersion?: number): Promise<ConfigMessage>
  /** The latest desired config, for delivery; undefined when none was ever set. */
  message (deviceId: string): Promise<ConfigMessage | undefined>
  /** Records what the device reported applying; false when the device is unknown. */
  recordReported (deviceId: string, version: number, config?: unknown): Promise<boolean>
}

export function createConfigStore (pool: pg.Pool): ConfigStore {
  return {
    async get (deviceId) {
      const { rows } = await pool.query<Row & { exists: boolean }>(
        `SELECT c.*, true AS exists FROM devices d LEFT JOIN device_configs c ON c.device_id = d.id WHERE d.id = $1`, [deviceId])
      if (rows.length === 0) throw notFound(`device ${deviceId}`)
      return toState(rows[0]!.desired_version === null ? undefined : rows[0])
    },

    async setDesired (deviceId, config, ifVersion) {
      // One statement: insert version 1, or bump the version, optionally
      // only from the version the caller saw (optimistic concurrency).
      const { rows } = await pool.query<{ desired_version: number, device_exists: boolean }>(
        `WITH d AS (SELECT id FROM devices WHERE id = $1),
              up AS (
                INSERT INTO device_configs (device_id, desired_version, desired_config, desired_at)
                SELECT id, 1, $2, now() FROM d
                WHERE $3::int IS NULL OR $3::int = 0
                ON CONFLICT (device_id) DO UPDATE
                  SET desired_version = device_configs.desired_version + 1, desired_config = EXCLUDED.desired_config, desired_at = now()
                  WHERE $3::int IS NULL OR device_configs.desired_version = $3::int
                RETURNING desired_version)
         SELECT (SELECT desired_version FROM up) AS desired_version, EXISTS (SELECT 1 FROM d) AS device_exists`,
        [deviceId, JSON.stringify(config), ifVersion ?? null])
      const row = rows[0]!
      if (!row.device_exists) throw notFound(`device ${deviceId}`)
      if (row.desired_version === null) {
        const current = await this.get(deviceId)
        throw new ApiError(409, 'version_conflict', `desired config is at version ${current.desired?.version ?? 0}, not ${ifVersion}`)
      }
      return { version: row.desired_version, config }
    },

    async message (deviceId) {
      const { rows } = await pool.query<{ desired_version: number, desired_config: unknown }>(
        'SELECT desired_version, desired_config FROM device_configs WHERE device_id = $1', [deviceId])
      return rows[0] ? { version: rows[0].desired_version, config: rows[0].desired_config } : undefined
    },

    async recordReported (deviceId, version, config) {
      const { rowCount } = await pool.query(
        `UPDATE device_configs SET reported_version = $2, reported_config = coalesce($3, reported_config), reported_at = now()
          WHERE device_id = $1`, [deviceId, version, config === undefined ? null : JSON.stringify(config)])
      return rowCount === 1
    }
  }
}

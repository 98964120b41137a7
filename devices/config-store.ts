// Desired and reported configuration of a device, like a device shadow or
// twin. PostgreSQL is the source of truth: what the broker sends on
// devices/{id}/config always comes from here.
import type pg from 'pg'
import { DomainError, notFound } from './domain-error.js'

export interface DeviceConfigState {
  desired: { version: number, config: unknown, updatedAt: Date } | null
  reported: { version: number, config: unknown, updatedAt: Date } | null
  inSync: boolean
}

/** The message a device receives on devices/{id}/config. */
export interface ConfigMessage { version: number, config: unknown }

interface Row {
  desired_version: number,
  desired_config: unknown,
  desired_at: Date
  reported_version: number | null,
  reported_config: unknown,
  reported_at: Date | null
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
  /** The device's config state; not_found when there is no such device. */
  get (deviceId: string): Promise<DeviceConfigState>
  /** Stores a new desired version; `ifVersion` (0 = none yet) makes it conditional (version_conflict on mismatch). */
  setDesired (deviceId: string, config: unknown, ifVersion?: number): Promise<ConfigMessage>
  /** The latest desired config of many devices (one query), for delivery; absent when none was ever set. */
  messages (deviceIds: string[]): Promise<Map<string, ConfigMessage>>
  /**
   * Records what the device reported applying. Returns undefined when the
   * device has no desired config; else the seconds since the reported version
   * became desired (null when it is not the current desired version).
   */
  recordReported (deviceId: string, version: number, config?: unknown): Promise<number | null | undefined>
}

export function createConfigStore (pool: pg.Pool): ConfigStore {
  return {
    async get (deviceId) {
      const { rows } = await pool.query<Row & { exists: boolean }>(
        'SELECT c.*, true AS exists FROM devices d LEFT JOIN device_configs c ON c.device_id = d.id WHERE d.id = $1', [deviceId])
      if (rows.length === 0) throw notFound(`device ${deviceId}`)
      return toState(rows[0]!.desired_version === null ? undefined : rows[0])
    },

    async setDesired (deviceId, config, ifVersion) {
      const json = JSON.stringify(config)
      // One statement per case, each atomic: unconditional upsert (bump the
      // version), first version only (ifVersion 0), or compare-and-set.
      const sql = ifVersion === undefined
        ? `INSERT INTO device_configs (device_id, desired_version, desired_config) SELECT id, 1, $2 FROM devices WHERE id = $1
           ON CONFLICT (device_id) DO UPDATE SET desired_version = device_configs.desired_version + 1, desired_config = EXCLUDED.desired_config, desired_at = now()
           RETURNING desired_version`
        : ifVersion === 0
          ? `INSERT INTO device_configs (device_id, desired_version, desired_config) SELECT id, 1, $2 FROM devices WHERE id = $1
             ON CONFLICT (device_id) DO NOTHING RETURNING desired_version`
          : `UPDATE device_configs SET desired_version = desired_version + 1, desired_config = $2, desired_at = now()
              WHERE device_id = $1 AND desired_version = $3 RETURNING desired_version`
      const { rows } = await pool.query<{ desired_version: number }>(sql, ifVersion ? [deviceId, json, ifVersion] : [deviceId, json])
      if (rows[0]) return { version: rows[0].desired_version, config }
      const current = await this.get(deviceId) // not_found when the device does not exist
      throw new DomainError('version_conflict', `desired config is at version ${current.desired?.version ?? 0}, not ${ifVersion}`)
    },

    async messages (deviceIds) {
      const { rows } = await pool.query<{ device_id: string, desired_version: number, desired_config: unknown }>(
        'SELECT device_id, desired_version, desired_config FROM device_configs WHERE device_id = ANY($1::text[])', [deviceIds])
      return new Map(rows.map((r) => [r.device_id, { version: r.desired_version, config: r.desired_config }]))
    },

    async recordReported (deviceId, version, config) {
      const { rows } = await pool.query<{ lag: number | null }>(
        // A version beyond the desired one was never sent: not recorded.
        `UPDATE device_configs SET reported_version = $2, reported_config = $3, reported_at = now()
          WHERE device_id = $1 AND $2 <= desired_version
          RETURNING CASE WHEN desired_version = $2 THEN extract(epoch FROM now() - desired_at)::float8 END AS lag`,
        [deviceId, version, config === undefined ? null : JSON.stringify(config)])
      return rows[0] ? rows[0].lag : undefined
    }
  }
}

// Desired and reported configuration of a device, like a device shadow or
// twin. PostgreSQL is the source of truth: what the broker sends on
// devices/{id}/config always comes from here.
//
// Every desired version is kept in config_versions (issue 13), written in
// the same statement as the device_configs change that makes it desired,
// with who set it; a rollback makes a new version equal to an old one. A
// device reports each version as applied or failed; the config state of a
// device follows from its desired version and its last report:
//
//   none     no desired config was ever set
//   in_sync  the device reported the desired version applied
//   failed   the device reported the desired version failed (a later
//            successful report, or a new desired version, ends it)
//   pending  anything else: the desired version is not reported yet
import type pg from 'pg'
import { withChanges, type Actor } from './change-recorder.js'
import { DomainError, notFound } from './domain-error.js'
import type { EventHub, FleetEvent } from './fleet-events.js'

export type ConfigStateName = 'none' | 'in_sync' | 'pending' | 'failed'
export type ReportStatus = 'applied' | 'failed'
export type ConfigSource = 'api' | 'rollback' | 'rollout'

export interface DeviceConfigState {
  desired: { version: number, config: unknown, updatedAt: Date } | null
  reported: { version: number, config: unknown, updatedAt: Date, status: ReportStatus, error: string | null } | null
  inSync: boolean
  state: ConfigStateName
}

/** One desired version of a device's config, as kept in config_versions. */
export interface ConfigVersion {
  version: number
  config: unknown
  setAt: Date
  /** The operator's token (for a rollout: the rollout's creator); null for versions set before history was kept. */
  setBy: { id: string, name: string } | null
  source: ConfigSource
  rolloutId: string | null
}

/** The message a device receives on devices/{id}/config. */
export interface ConfigMessage { version: number, config: unknown }

/** What a device published on devices/{id}/config/reported. */
export interface ConfigReport { version: number, config?: unknown, status: ReportStatus, error?: string | null }

/**
 * The config state of a device_configs row `c` (LEFT JOINed: NULL columns
 * when there is none), as SQL: for filters and lists that must agree with
 * GET /v1/devices/{id}/config.
 */
export const configStateSql = (c: string) =>
  `CASE WHEN ${c}.desired_version IS NULL THEN 'none'
        WHEN ${c}.reported_version = ${c}.desired_version AND ${c}.reported_status = 'failed' THEN 'failed'
        WHEN ${c}.reported_version = ${c}.desired_version THEN 'in_sync'
        ELSE 'pending' END`

interface Row {
  desired_version: number,
  desired_config: unknown,
  desired_at: Date
  reported_version: number | null,
  reported_config: unknown,
  reported_at: Date | null
  reported_status: ReportStatus | null
  reported_error: string | null
}

function toState (r: Row | undefined): DeviceConfigState {
  if (!r) return { desired: null, reported: null, inSync: true, state: 'none' }
  const reported = r.reported_version === null
    ? null
    : { version: r.reported_version, config: r.reported_config, updatedAt: r.reported_at!, status: r.reported_status ?? 'applied', error: r.reported_error }
  const state: ConfigStateName = reported === null || reported.version !== r.desired_version
    ? 'pending'
    : reported.status === 'failed' ? 'failed' : 'in_sync'
  return {
    desired: { version: r.desired_version, config: r.desired_config, updatedAt: r.desired_at },
    reported,
    inSync: state === 'in_sync',
    state
  }
}

interface VersionRow { version: number, config: unknown, set_at: Date, set_by_id: string | null, set_by_name: string | null, source: ConfigSource, rollout_id: string | null }

const toVersion = (r: VersionRow): ConfigVersion => ({
  version: r.version,
  config: r.config,
  setAt: r.set_at,
  setBy: r.set_by_id === null ? null : { id: r.set_by_id, name: r.set_by_name ?? r.set_by_id },
  source: r.source,
  rolloutId: r.rollout_id
})

export interface ConfigStore {
  /** The device's config state; not_found when there is no such device. */
  get (deviceId: string): Promise<DeviceConfigState>
  /**
   * Stores a new desired version set by `actor` (audited as config.set);
   * `ifVersion` (0 = none yet) makes it conditional (version_conflict on mismatch).
   */
  setDesired (deviceId: string, config: unknown, ifVersion: number | undefined, actor: Actor): Promise<ConfigMessage>
  /**
   * Makes a new desired version equal to version `toVersion` (audited as
   * config.rollback); not_found for an unknown device or a version it never had.
   */
  rollback (deviceId: string, toVersion: number, actor: Actor): Promise<ConfigMessage>
  /** Desired versions, newest first, those below `beforeVersion` when given; not_found for an unknown device. */
  history (deviceId: string, limit: number, beforeVersion?: number): Promise<ConfigVersion[]>
  /** The latest desired config of many devices (one query), for delivery; absent when none was ever set. */
  messages (deviceIds: string[]): Promise<Map<string, ConfigMessage>>
  /**
   * Records what the device reported. Returns undefined when the device has
   * no desired config (or reported a version it was never sent); else, for
   * an applied report, the seconds since the reported version became
   * desired (null when it is not the current desired version, or failed).
   */
  recordReported (deviceId: string, report: ConfigReport): Promise<number | null | undefined>
}

/** Longest error text kept from a device's failed report (longer ones are cut, not refused). */
export const MAX_REPORT_ERROR_CHARS = 1000

export function createConfigStore (deps: { pool: pg.Pool, hub: EventHub }): ConfigStore {
  const { pool, hub } = deps

  async function deviceExists (client: Pick<pg.ClientBase, 'query'>, deviceId: string): Promise<boolean> {
    const { rows } = await client.query('SELECT 1 FROM devices WHERE id = $1', [deviceId])
    return rows.length === 1
  }

  return {
    async get (deviceId) {
      const { rows } = await pool.query<Row & { exists: boolean }>(
        'SELECT c.*, true AS exists FROM devices d LEFT JOIN device_configs c ON c.device_id = d.id WHERE d.id = $1', [deviceId])
      if (rows.length === 0) throw notFound(`device ${deviceId}`)
      return toState(rows[0]!.desired_version === null ? undefined : rows[0])
    },

    async setDesired (deviceId, config, ifVersion, actor) {
      const json = JSON.stringify(config)
      // One statement per case, each atomic and each keeping the version in
      // the history: unconditional upsert (bump the version), first version
      // only (ifVersion 0), or compare-and-set.
      const change = ifVersion === undefined
        ? `INSERT INTO device_configs (device_id, desired_version, desired_config) SELECT id, 1, $2 FROM devices WHERE id = $1
           ON CONFLICT (device_id) DO UPDATE SET desired_version = device_configs.desired_version + 1, desired_config = EXCLUDED.desired_config, desired_at = now()
           RETURNING device_id, desired_version, desired_config, desired_at`
        : ifVersion === 0
          ? `INSERT INTO device_configs (device_id, desired_version, desired_config) SELECT id, 1, $2 FROM devices WHERE id = $1
             ON CONFLICT (device_id) DO NOTHING RETURNING device_id, desired_version, desired_config, desired_at`
          : `UPDATE device_configs SET desired_version = desired_version + 1, desired_config = $2, desired_at = now()
              WHERE device_id = $1 AND desired_version = $5 RETURNING device_id, desired_version, desired_config, desired_at`
      const sql = `WITH c AS (${change}),
        h AS (INSERT INTO config_versions (device_id, version, config, set_at, set_by_id, set_by_name, source)
              SELECT device_id, desired_version, desired_config, desired_at, $3, $4, 'api' FROM c)
        SELECT desired_version FROM c`
      return await withChanges({ pool, hub }, actor, async (client, rec) => {
        const { rows } = await client.query<{ desired_version: number }>(sql, ifVersion ? [deviceId, json, actor.id, actor.name, ifVersion] : [deviceId, json, actor.id, actor.name])
        if (!rows[0]) {
          if (!(await deviceExists(client, deviceId))) throw notFound(`device ${deviceId}`)
          const { rows: cur } = await client.query<{ v: number }>('SELECT desired_version AS v FROM device_configs WHERE device_id = $1', [deviceId])
          throw new DomainError('version_conflict', `desired config is at version ${cur[0]?.v ?? 0}, not ${ifVersion}`)
        }
        const version = rows[0].desired_version
        rec.audit({ action: 'config.set', targetType: 'device', targetId: deviceId, before: { version: version > 1 ? version - 1 : null }, after: { version } })
        rec.event({ kind: 'config', type: 'desired', deviceId, data: { version, source: 'api' } })
        return { version, config }
      })
    },

    async rollback (deviceId, toVersion, actor) {
      return await withChanges({ pool, hub }, actor, async (client, rec) => {
        // The device_configs row is locked by the UPDATE: concurrent changes
        // each get their own version, in order.
        const { rows } = await client.query<{ desired_version: number, desired_config: unknown }>(
          `WITH v AS (SELECT config FROM config_versions WHERE device_id = $1 AND version = $2),
           c AS (UPDATE device_configs SET desired_version = desired_version + 1, desired_config = v.config, desired_at = now()
                   FROM v WHERE device_id = $1 RETURNING device_id, desired_version, desired_config, desired_at),
           h AS (INSERT INTO config_versions (device_id, version, config, set_at, set_by_id, set_by_name, source)
                 SELECT device_id, desired_version, desired_config, desired_at, $3, $4, 'rollback' FROM c)
           SELECT desired_version, desired_config FROM c`,
          [deviceId, toVersion, actor.id, actor.name])
        if (!rows[0]) {
          if (!(await deviceExists(client, deviceId))) throw notFound(`device ${deviceId}`)
          throw notFound(`config version ${toVersion} of device ${deviceId}`)
        }
        const version = rows[0].desired_version
        rec.audit({ action: 'config.rollback', targetType: 'device', targetId: deviceId, before: { version: version - 1 }, after: { version, toVersion } })
        rec.event({ kind: 'config', type: 'desired', deviceId, data: { version, source: 'rollback', toVersion } })
        return { version, config: rows[0].desired_config }
      })
    },

    async history (deviceId, limit, beforeVersion) {
      const { rows } = await pool.query<VersionRow>(
        `SELECT version, config, set_at, set_by_id, set_by_name, source, rollout_id FROM config_versions
          WHERE device_id = $1 AND ($2::int IS NULL OR version < $2) ORDER BY version DESC LIMIT $3`,
        [deviceId, beforeVersion ?? null, limit])
      if (rows.length === 0 && !(await deviceExists(pool, deviceId))) throw notFound(`device ${deviceId}`)
      return rows.map(toVersion)
    },

    async messages (deviceIds) {
      const { rows } = await pool.query<{ device_id: string, desired_version: number, desired_config: unknown }>(
        'SELECT device_id, desired_version, desired_config FROM device_configs WHERE device_id = ANY($1::text[])', [deviceIds])
      return new Map(rows.map((r) => [r.device_id, { version: r.desired_version, config: r.desired_config }]))
    },

    async recordReported (deviceId, report) {
      const error = report.status === 'failed' ? cut(report.error ?? null) : null
      // One statement (a report is on the device's PUBACK path, and a fleet
      // reconnecting reports all at once): the report, the outcome of the
      // rollout targets it answers, and — when the device's state changed —
      // its stored event, which is then published like withChanges does.
      const { rows } = await pool.query<{ lag: number | null, event_id: string | null, event_at: Date | null }>(
        // `old` is the row before this report, read without a lock (a lock
        // is one more tuple write per report): two reports of one device
        // racing each other may emit one event too many or too few.
        `WITH old AS (
           SELECT device_id, reported_version, reported_status FROM device_configs
            -- A version beyond the desired one was never sent: not recorded.
            WHERE device_id = $1 AND $2 <= desired_version),
         u AS (
           UPDATE device_configs c SET reported_version = $2, reported_config = $3, reported_at = now(), reported_status = $4, reported_error = $5
             FROM old WHERE c.device_id = old.device_id
           RETURNING c.device_id,
                     CASE WHEN c.desired_version = $2 AND $4 = 'applied' THEN extract(epoch FROM now() - c.desired_at)::float8 END AS lag,
                     (old.reported_version IS DISTINCT FROM $2 OR old.reported_status IS DISTINCT FROM $4) AS changed),
         t AS (
           -- A rollout's target is answered by a report on its version, and
           -- is applied too once a later version was applied.
           UPDATE rollout_targets rt SET outcome = $4 FROM u
            WHERE rt.device_id = u.device_id AND rt.version IS NOT NULL AND rt.outcome IS DISTINCT FROM $4
              AND (rt.version = $2 OR ($4 = 'applied' AND rt.version < $2))),
         e AS (
           INSERT INTO fleet_events (kind, type, device_id, data)
           SELECT 'config', $4, u.device_id, jsonb_build_object('version', $2::int) || CASE WHEN $4 = 'failed' THEN jsonb_build_object('error', $5::text) ELSE '{}'::jsonb END
             FROM u WHERE u.changed
           RETURNING id, at)
         SELECT u.lag, e.id AS event_id, e.at AS event_at FROM u LEFT JOIN e ON true`,
        [deviceId, report.version, report.config === undefined ? null : JSON.stringify(report.config), report.status, error])
      const r = rows[0]
      if (!r) return undefined
      if (r.event_id !== null) {
        const data: Record<string, unknown> = { version: report.version }
        if (report.status === 'failed') data.error = error
        const event: FleetEvent = { id: String(r.event_id), kind: 'config', type: report.status, at: r.event_at!.toISOString(), deviceId, data }
        hub.publish([event])
      }
      return r.lag
    }
  }
}

function cut (text: string | null): string | null {
  if (text === null || text.length <= MAX_REPORT_ERROR_CHARS) return text
  // By code points: a cut never leaves half a surrogate pair.
  return `${[...text].slice(0, MAX_REPORT_ERROR_CHARS - 1).join('')}…`
}

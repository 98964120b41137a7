// /v1/overview: the fleet at a glance, for the console's overview page and
// `fleetgate status`. Device and dead-letter counts come from PostgreSQL (the
// whole cluster); rates, ingest queue, PUBACK p99 and readiness are those of
// the replica that answers (devices/replica-stats.ts).
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import type pg from 'pg'
import type { OperatorAuth } from '../operator-auth.js'
import type { ReplicaStats } from '../replica-stats.js'
import { errors } from '../schemas.js'
import { configStateSql } from '../config-store.js'

/** Dead letters are counted over this many recent hours (the table keeps them all). */
export const DEAD_LETTER_WINDOW_HOURS = 24

const Num = Type.Number()
const Overview = Type.Object({
  devices: Type.Object({
    total: Type.Integer(),
    online: Type.Integer(),
    offline: Type.Integer(),
    disabled: Type.Integer(),
    config: Type.Object({ inSync: Type.Integer(), pending: Type.Integer(), failed: Type.Integer() }, { description: 'devices with a desired config, by state' })
  }),
  rates: Type.Object({ connectsPerSecond: Num, telemetryStoredPerSecond: Num }, { description: 'this replica, over the last windowSeconds' }),
  pubackP99Ms: Type.Union([Num, Type.Null()], { description: 'this replica: p99 from PUBLISH received to its batch committed (the PUBACK), over the last windowSeconds; null when nothing was stored' }),
  ingest: Type.Object({
    queueRows: Type.Integer(),
    queueCapacity: Type.Integer(),
    backpressureSeconds: Type.Number({ description: 'total time publishers were held by a full queue since this replica started' })
  }),
  windowSeconds: Num,
  deadLetters: Type.Object({
    windowHours: Type.Integer(),
    byReason: Type.Record(Type.String(), Type.Integer(), { description: 'dead letters received in the last windowHours, by reason' })
  }),
  readiness: Type.Object({
    ready: Type.Boolean(),
    reason: Type.Union([Type.String(), Type.Null()]),
    database: Type.Boolean(),
    redis: Type.Union([Type.Boolean(), Type.Null()], { description: 'null without Redis (single replica)' })
  }),
  at: Type.String({ format: 'date-time' })
}, {
  examples: [{
    devices: { total: 1200, online: 1130, offline: 70, disabled: 4, config: { inSync: 1100, pending: 18, failed: 2 } },
    rates: { connectsPerSecond: 0.4, telemetryStoredPerSecond: 1126.5 },
    pubackP99Ms: 18.2,
    ingest: { queueRows: 12, queueCapacity: 40000, backpressureSeconds: 0 },
    windowSeconds: 10,
    deadLetters: { windowHours: 24, byReason: { invalid_json: 3 } },
    readiness: { ready: true, reason: null, database: true, redis: null },
    at: '2026-11-29T12:00:00.000Z'
  }]
})

export interface OverviewRoutesOptions { auth: OperatorAuth, pool: pg.Pool, stats?: ReplicaStats }

// The same states as a device's configState (devices/config-store.ts configStateSql)
// and the list filter, so the overview's counts match what the filter lists.
const CONFIG_STATES = `
  SELECT count(*) FILTER (WHERE state = 'in_sync')::int AS in_sync,
         count(*) FILTER (WHERE state = 'failed')::int AS failed,
         count(*)::int AS total
    FROM (SELECT ${configStateSql('c')} AS state FROM device_configs c) s`

/** How long one set of counts serves every caller (each open console polls every few seconds). */
const COUNTS_TTL_MS = 2000

export const overviewRoutes: FastifyPluginAsyncTypebox<OverviewRoutesOptions> = async (app, { auth, pool, stats }) => {
  // Counting a 100,000-device fleet takes tens of milliseconds: consoles
  // polling at once share one round of queries per COUNTS_TTL_MS.
  let cached: { at: number, value: Promise<[pg.QueryResult, Record<string, number>, pg.QueryResult]> } | undefined
  const counts = () => {
    if (cached && Date.now() - cached.at < COUNTS_TTL_MS) return cached.value
    const value = Promise.all([
      pool.query(`SELECT count(*)::int AS total, count(*) FILTER (WHERE online)::int AS online,
                         count(*) FILTER (WHERE disabled_at IS NOT NULL)::int AS disabled FROM devices`),
      pool.query(CONFIG_STATES).then((r) => r.rows[0] as Record<string, number>),
      pool.query(`SELECT reason, count(*)::int AS n FROM dead_letters
                   WHERE received_at > now() - make_interval(hours => $1) GROUP BY reason`, [DEAD_LETTER_WINDOW_HOURS])
    ])
    cached = { at: Date.now(), value }
    // A failure is not kept: the next caller asks again.
    value.catch(() => { if (cached?.value === value) cached = undefined })
    return value
  }
  app.get('/overview', {
    preHandler: auth.require('read'),
    schema: {
      tags: ['overview'],
      operationId: 'getOverview',
      summary: 'The fleet at a glance: device counts, this replica\'s rates, ingest and readiness',
      response: { 200: Overview, ...errors() }
    }
  }, async () => {
    const [[devices, config, dead], snapshot, readiness] = await Promise.all([counts(), stats?.snapshot(), stats?.readiness()])
    const d = devices.rows[0] as { total: number, online: number, disabled: number }
    const c = config as { in_sync: number, failed: number, total: number }
    return {
      devices: {
        total: d.total,
        online: d.online,
        offline: d.total - d.online,
        disabled: d.disabled,
        config: { inSync: c.in_sync, failed: c.failed, pending: c.total - c.in_sync - c.failed }
      },
      rates: snapshot?.rates ?? { connectsPerSecond: 0, telemetryStoredPerSecond: 0 },
      pubackP99Ms: snapshot?.pubackP99Ms ?? null,
      ingest: snapshot?.ingest ?? { queueRows: 0, queueCapacity: 0, backpressureSeconds: 0 },
      windowSeconds: snapshot?.windowSeconds ?? 0,
      deadLetters: {
        windowHours: DEAD_LETTER_WINDOW_HOURS,
        byReason: Object.fromEntries(dead.rows.map((r: { reason: string, n: number }) => [r.reason, r.n]))
      },
      // Without stats (a control plane outside a broker) the answer itself shows the database works.
      readiness: readiness ?? { ready: true, reason: null, database: true, redis: null },
      at: new Date().toISOString()
    }
  })
}

// One transaction for a change, its audit entry and its stored events
// (issue 13: "written in the same transaction as the change"). The work runs
// inside BEGIN … COMMIT (devices/transaction.ts); what it records is
// inserted just before COMMIT, and the events are published to the hub only
// after COMMIT, so a rolled-back change leaves neither an audit entry nor an
// event anywhere.
//
//   await withChanges({ pool, hub }, actorOf(req), async (client, rec) => {
//     const before = …; await client.query(…)
//     rec.audit({ action: 'device.update', targetType: 'device', targetId: id, before, after })
//     rec.event({ kind: 'device', type: 'updated', deviceId: id, data: { … } })
//   })
import type pg from 'pg'
import type { EventHub, FleetEvent, NewEvent } from './fleet-events.js'
import { withTransaction } from './transaction.js'

/** Who made a change: the operator's token, or the broker itself (rollouts, expiry, devices' reports). */
export interface Actor {
  /** Token id; 'admin' for ADMIN_TOKEN; 'system' for the broker's own work. */
  id: string
  name: string
  requestId?: string
}

export const SYSTEM_ACTOR: Actor = { id: 'system', name: 'fleetgate' }

export interface AuditEntry {
  /** '<resource>.<verb>', e.g. device.create, config.rollback, rollout.pause, token.revoke, device.bulk_delete. */
  action: string
  targetType: string
  targetId?: string | null
  before?: unknown
  after?: unknown
}

export interface ChangeRecorder {
  audit (entry: AuditEntry): void
  event (event: NewEvent): void
  /**
   * Runs `fn` once the change has committed (never if it rolls back): for
   * what must not happen before others can see the change, e.g. dropping
   * cached credentials (a look-up in between would cache the old row again).
   * A throwing `fn` is ignored: the change is already stored.
   */
  afterCommit (fn: () => void): void
}

/** Anything that runs a query: the pool, or a transaction's client. */
export type Queryable = Pick<pg.ClientBase, 'query'>

export interface ChangeDeps { pool: pg.Pool, hub: EventHub }

/** Inserts the audit entries and stored events of a change on its transaction's client; returns the events with ids. */
export async function writeChanges (client: pg.ClientBase, actor: Actor | undefined, audits: AuditEntry[], events: NewEvent[]): Promise<FleetEvent[]> {
  if (audits.length > 0) {
    if (!actor) throw new Error('an audited change needs an actor')
    await client.query(
      `INSERT INTO audit_log (actor_id, actor_name, request_id, action, target_type, target_id, before, after)
       SELECT $1, $2, $3, a, t, i, b, f FROM unnest($4::text[], $5::text[], $6::text[], $7::jsonb[], $8::jsonb[]) AS u(a, t, i, b, f)`,
      [actor.id, actor.name, actor.requestId ?? null,
        audits.map((a) => a.action), audits.map((a) => a.targetType), audits.map((a) => a.targetId ?? null),
        audits.map((a) => a.before === undefined ? null : JSON.stringify(a.before)),
        audits.map((a) => a.after === undefined ? null : JSON.stringify(a.after))])
  }
  if (events.length === 0) return []
  const { rows } = await client.query<{ id: string, at: Date }>(
    `INSERT INTO fleet_events (kind, type, device_id, data, at)
     SELECT k, t, d, x, coalesce(a, now()) FROM unnest($1::text[], $2::text[], $3::text[], $4::jsonb[], $5::timestamptz[]) WITH ORDINALITY AS u(k, t, d, x, a, n)
     ORDER BY n RETURNING id, at`,
    [events.map((e) => e.kind), events.map((e) => e.type), events.map((e) => e.deviceId ?? null),
      events.map((e) => JSON.stringify(e.data)), events.map((e) => e.at ?? null)])
  return events.map((e, i) => ({ ...e, id: rows[i]!.id, at: rows[i]!.at.toISOString() }))
}

/**
 * Runs `work` in a transaction; the audit entries and stored events it
 * records are written in that transaction and the events published after
 * COMMIT. Live-only kinds (telemetry, presence) do not belong here: publish
 * them to the hub directly.
 */
export async function withChanges<T> (deps: ChangeDeps, actor: Actor | undefined, work: (client: pg.PoolClient, rec: ChangeRecorder) => Promise<T>): Promise<T> {
  let published: FleetEvent[] = []
  const after: Array<() => void> = []
  const result = await withTransaction(deps.pool, async (client) => {
    const audits: AuditEntry[] = []
    const events: NewEvent[] = []
    const value = await work(client, { audit: (a) => audits.push(a), event: (e) => events.push(e), afterCommit: (fn) => after.push(fn) })
    published = await writeChanges(client, actor, audits, events)
    return value
  })
  for (const fn of after) { try { fn() } catch {} }
  if (published.length > 0) deps.hub.publish(published)
  return result
}

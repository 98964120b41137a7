// Commands with a lifecycle (issue 3): queued → sent → succeeded | failed,
// or expired when the TTL passes first, or cancelled by an operator (issue
// 13). Every transition is a conditional UPDATE, so a late result cannot
// revive an expired or cancelled command and two replicas cannot both
// complete one. Final transitions NOTIFY, so `waitSeconds` requests on any
// replica wake up without polling; a device's result recorded here is also
// announced in-process after COMMIT (onFinished), so this replica's waiters
// answer without that round trip (issue 15). The broker's own transitions (sent,
// succeeded, failed, expired) are stored as `command` events in their
// transaction and published after COMMIT (devices/change-recorder.ts); the
// operator's (queued, cancelled) are recorded by the REST route with its
// audit entry.
import { randomUUID } from 'node:crypto'
import type pg from 'pg'
import { SYSTEM_ACTOR, withChanges, type ChangeRecorder, type Queryable } from './change-recorder.js'
import { CHANNELS } from './dispatch.js'
import { DomainError, notFound } from './domain-error.js'
import { createLocalEventHub, type EventHub, type FleetEvent, type NewEvent } from './fleet-events.js'
import { withTransaction } from './transaction.js'
import { isUuid } from './uuid.js'

export type CommandStatus = 'queued' | 'sent' | 'succeeded' | 'failed' | 'expired' | 'cancelled'
export const COMMAND_STATUSES: CommandStatus[] = ['queued', 'sent', 'succeeded', 'failed', 'expired', 'cancelled']
export const FINAL: ReadonlySet<CommandStatus> = new Set(['succeeded', 'failed', 'expired', 'cancelled'])

/** The `command` event of a transition (API contract: data {commandId, name}). */
export const commandEvent = (c: { id: string, deviceId: string, name: string }, type: CommandStatus): NewEvent =>
  ({ kind: 'command', type, deviceId: c.deviceId, data: { commandId: c.id, name: c.name } })

export interface Command {
  id: string
  deviceId: string
  name: string
  params: unknown
  status: CommandStatus
  createdAt: Date
  expiresAt: Date
  sentAt: Date | null
  completedAt: Date | null
  result: unknown
  correlationId: string | null
}

/** What a device receives on devices/{id}/commands/{commandId}. */
export interface CommandMessage { id: string, name: string, params: unknown, expiresAt: string }

interface Row {
  id: string,
  device_id: string,
  name: string,
  params: unknown,
  status: CommandStatus,
  created_at: Date,
  expires_at: Date
  sent_at: Date | null,
  completed_at: Date | null,
  result: unknown,
  correlation_id: string | null
}

const toCommand = (r: Row): Command => ({
  id: r.id,
  deviceId: r.device_id,
  name: r.name,
  params: r.params,
  status: r.status,
  createdAt: r.created_at,
  expiresAt: r.expires_at,
  sentAt: r.sent_at,
  completedAt: r.completed_at,
  result: r.result,
  correlationId: r.correlation_id
})

export const toMessage = (c: Command): CommandMessage => ({ id: c.id, name: c.name, params: c.params, expiresAt: c.expiresAt.toISOString() })

export interface NewCommand { name: string, params?: unknown, ttlSeconds: number, idempotencyKey?: string, correlationId?: string }

export type ResultOutcome = 'completed' | 'unknown' | 'finished'

export interface CommandStore {
  /**
   * Creates a command; with an idempotency key seen for this device in the
   * last day, returns that command instead (idempotency_key_reused when that
   * command is not this one; not_found when there is no such device).
   */
  create (deviceId: string, cmd: NewCommand, q?: pg.ClientBase): Promise<{ command: Command, created: boolean }>
  get (id: string, q?: Queryable): Promise<Command | undefined>
  list (deviceId: string, limit: number, after?: [string, string], status?: CommandStatus): Promise<Command[]>
  /**
   * An operator cancels a queued or sent command (issue 13), on the caller's
   * transaction; not_found, or invalid_transition when it is final already.
   * A result the device sends later is ignored, as for an expired command.
   */
  cancel (id: string, q: Queryable): Promise<{ before: CommandStatus, command: Command }>
  /** Queued, unexpired commands of many devices (one query), oldest first, at most `limit` each (delivered when they subscribe). */
  pendingMany (deviceIds: string[], limit?: number): Promise<Map<string, Command[]>>
  /** Marks queued commands sent; returns those it changed, as they now are (a command already answered is not among them). */
  markSent (ids: string[]): Promise<Command[]>
  /** A device's result: completes a queued or sent, unexpired command of that device. */
  complete (deviceId: string, id: string, status: 'succeeded' | 'failed', result: unknown): Promise<{ outcome: ResultOutcome, correlationId?: string | null }>
  /** Expires every open command past its TTL; returns how many. */
  expire (): Promise<number>
  /**
   * `listener` is called, after COMMIT, with each command a device's result
   * made final in this process (complete). Other final transitions are known
   * through the NOTIFY only (an expiry) or by their caller (a cancel).
   */
  onFinished (listener: (command: Command) => void): void
}

const IDEMPOTENCY_WINDOW = "interval '1 day'"

/**
 * The `command` events of the rows of CTE `changed`, inserted into
 * fleet_events by the same statement (the data of commandEvent()). The
 * transitions on the round trip of a command (sent, succeeded, failed) are
 * each one statement, so one round trip and one implicit transaction, instead
 * of BEGIN, UPDATE, INSERT, COMMIT (issue 15: every round trip on that path
 * waits for a busy event loop); withChanges() gives the same guarantees:
 * stored with the change, published after COMMIT.
 */
const COMMAND_EVENTS = `events AS (
     INSERT INTO fleet_events (kind, type, device_id, data)
     SELECT 'command', status, device_id, jsonb_build_object('commandId', id, 'name', name) FROM changed
     RETURNING id AS event_id, at AS event_at, (data->>'commandId')::uuid AS command_id)`

type EventRow = Row & { event_id: string, event_at: Date }

const storedEvent = (r: EventRow): FleetEvent =>
  ({ ...commandEvent({ id: r.id, deviceId: r.device_id, name: r.name }, r.status), id: String(r.event_id), at: r.event_at.toISOString() })

export interface CommandStoreOptions {
  /** Where the broker's transitions are published (default: nobody listens; they are still stored). */
  events?: EventHub
}

export function createCommandStore (pool: pg.Pool, opts: CommandStoreOptions = {}): CommandStore {
  const deps = { pool, hub: opts.events ?? createLocalEventHub() }
  // The broker's own transitions: events, no audit entry.
  const system = <T>(work: (client: pg.PoolClient, rec: ChangeRecorder) => Promise<T>) => withChanges(deps, SYSTEM_ACTOR, work)
  const finishedListeners: Array<(command: Command) => void> = []
  return {
    onFinished (listener) { finishedListeners.push(listener) },

    async create (deviceId, cmd, q) {
      // In the caller's transaction when given one (an audited REST call).
      const inTransaction = <T>(work: (client: pg.ClientBase) => Promise<T>) => q ? work(q) : withTransaction(pool, work)
      return await inTransaction(async (client) => {
        if (cmd.idempotencyKey) {
          // Serialise concurrent requests with the same key.
          await client.query('SELECT pg_advisory_xact_lock(hashtext($1), hashtext($2))', [deviceId, cmd.idempotencyKey])
          const { rows } = await client.query<Row & { fresh: boolean, same: boolean }>(
            `SELECT *, created_at > now() - ${IDEMPOTENCY_WINDOW} AS fresh,
                    (name = $3 AND params = $4::jsonb AND expires_at - created_at = make_interval(secs => $5)) AS same
               FROM commands WHERE device_id = $1 AND idempotency_key = $2`,
            [deviceId, cmd.idempotencyKey, cmd.name, JSON.stringify(cmd.params ?? {}), cmd.ttlSeconds])
          if (rows[0]?.fresh) {
            // A retry must repeat the request; the same key for another
            // request is a client bug, not a retry (422, as the IETF
            // Idempotency-Key draft says). Nothing was written: the
            // rollback of the throw costs nothing.
            if (!rows[0].same) throw new DomainError('idempotency_key_reused', 'this Idempotency-Key was used in the last day for a different command to this device')
            return { command: toCommand(rows[0]), created: false }
          }
          // A key older than a day is free again.
          if (rows[0]) await client.query('UPDATE commands SET idempotency_key = NULL WHERE id = $1', [rows[0].id])
        }
        const { rows } = await client.query<Row>(
          `INSERT INTO commands (id, device_id, name, params, status, expires_at, idempotency_key, correlation_id)
           SELECT $1, id, $2, $3, 'queued', now() + make_interval(secs => $4), $5, $6 FROM devices WHERE id = $7
           RETURNING *`,
          [randomUUID(), cmd.name, JSON.stringify(cmd.params ?? {}), cmd.ttlSeconds, cmd.idempotencyKey ?? null, cmd.correlationId ?? null, deviceId])
        if (!rows[0]) throw notFound(`device ${deviceId}`)
        return { command: toCommand(rows[0]), created: true }
      })
    },

    async get (id, q = pool) {
      if (!isUuid(id)) return undefined
      const { rows } = await q.query<Row>('SELECT * FROM commands WHERE id = $1', [id])
      return rows[0] ? toCommand(rows[0]) : undefined
    },

    async list (deviceId, limit, after, status) {
      const { rows } = await pool.query<Row>(
        `SELECT * FROM commands WHERE device_id = $1 AND ($2::timestamptz IS NULL OR (created_at, id) > ($2::timestamptz, $3::uuid))
            AND ($5::text IS NULL OR status = $5)
          ORDER BY created_at, id LIMIT $4`, [deviceId, after?.[0] ?? null, after?.[1] ?? null, limit, status ?? null])
      return rows.map(toCommand)
    },

    async cancel (id, q) {
      if (!isUuid(id)) throw notFound(`command ${id}`)
      const { rows: current } = await q.query<{ status: CommandStatus }>('SELECT status FROM commands WHERE id = $1 FOR UPDATE', [id])
      const before = current[0]?.status
      if (before === undefined) throw notFound(`command ${id}`)
      if (FINAL.has(before)) throw new DomainError('invalid_transition', `command ${id} is already ${before}; only a queued or sent command can be cancelled`)
      // The NOTIFY is delivered at COMMIT: waiters wake to the cancelled state.
      const { rows } = await q.query<Row>(
        `UPDATE commands SET status = 'cancelled', completed_at = now() WHERE id = $1 RETURNING *, pg_notify('${CHANNELS.commandDone}', id::text)`, [id])
      return { before, command: toCommand(rows[0]!) }
    },

    async pendingMany (deviceIds, limit = 1000) {
      const { rows } = await pool.query<Row>(
        `SELECT c.* FROM unnest($1::text[]) AS d(id)
           CROSS JOIN LATERAL (SELECT * FROM commands WHERE device_id = d.id AND status IN ('queued', 'sent') AND expires_at > now()
                                ORDER BY created_at, id LIMIT $2) c`, [deviceIds, limit])
      const out = new Map<string, Command[]>()
      for (const r of rows) { const c = toCommand(r); const list = out.get(c.deviceId); if (list) list.push(c); else out.set(c.deviceId, [c]) }
      return out
    },

    async markSent (ids) {
      if (ids.length === 0) return []
      // RETURNING the rows: the REST call that sent one answers with it, without reading it again.
      const { rows } = await pool.query<EventRow>(
        `WITH changed AS (
           UPDATE commands SET status = 'sent', sent_at = now() WHERE id = ANY($1::uuid[]) AND status = 'queued' RETURNING *),
         ${COMMAND_EVENTS}
         SELECT changed.*, events.event_id, events.event_at FROM changed JOIN events ON events.command_id = changed.id`, [ids])
      if (rows.length > 0) deps.hub.publish(rows.map(storedEvent))
      return rows.map(toCommand)
    },

    async complete (deviceId, id, status, result) {
      if (!isUuid(id)) return { outcome: 'unknown' }
      // One statement (see COMMAND_EVENTS); its NOTIFY is delivered at its COMMIT.
      const { rows } = await pool.query<EventRow>(
        `WITH changed AS (
           UPDATE commands SET status = $3, result = $4, completed_at = now()
            WHERE id = $1 AND device_id = $2 AND status IN ('queued', 'sent') AND expires_at > now()
            RETURNING *),
         ${COMMAND_EVENTS}
         SELECT changed.*, events.event_id, events.event_at, pg_notify('${CHANNELS.commandDone}', changed.id::text)
           FROM changed JOIN events ON events.command_id = changed.id`,
        [id, deviceId, status, result === undefined ? null : JSON.stringify(result)])
      const done = rows[0] ? toCommand(rows[0]) : undefined
      if (rows[0]) deps.hub.publish([storedEvent(rows[0])])
      if (done) {
        // Committed: this replica's waiters answer now; others get the NOTIFY.
        for (const listener of finishedListeners) { try { listener(done) } catch {} }
        return { outcome: 'completed', correlationId: done.correlationId }
      }
      // Expired or cancelled meanwhile (or answered twice): ignored, and counted by the caller.
      const { rows: existing } = await pool.query('SELECT 1 FROM commands WHERE id = $1 AND device_id = $2', [id, deviceId])
      return { outcome: existing.length === 1 ? 'finished' : 'unknown' }
    },

    async expire () {
      return await system(async (client, rec) => {
        const { rows } = await client.query<{ id: string, device_id: string, name: string }>(
          // In batches, so a large backlog never runs into the statement timeout.
          `WITH gone AS (
             UPDATE commands SET status = 'expired', completed_at = now()
              WHERE id IN (SELECT id FROM commands WHERE status IN ('queued', 'sent') AND expires_at <= now() LIMIT 5000)
                AND status IN ('queued', 'sent')
              RETURNING id, device_id, name)
           SELECT id, device_id, name, pg_notify('${CHANNELS.commandDone}', id::text) FROM gone`)
        for (const r of rows) rec.event(commandEvent({ id: r.id, deviceId: r.device_id, name: r.name }, 'expired'))
        return rows.length
      })
    }
  }
}

// Commands with a lifecycle (issue 3): queued → sent → succeeded | failed,
// or expired when the TTL passes first. Every transition is a conditional
// UPDATE, so a late result cannot revive an expired command and two replicas
// cannot both complete one. Final transitions NOTIFY, so `waitSeconds`
// requests on any replica wake up without polling.
import { randomUUID } from 'node:crypto'
import type pg from 'pg'
import { CHANNELS } from './dispatch.js'
import { DomainError, notFound } from './domain-error.js'
import { withTransaction } from './transaction.js'
import { isUuid } from './uuid.js'

export type CommandStatus = 'queued' | 'sent' | 'succeeded' | 'failed' | 'expired'
export const FINAL: ReadonlySet<CommandStatus> = new Set(['succeeded', 'failed', 'expired'])

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
  create (deviceId: string, cmd: NewCommand): Promise<{ command: Command, created: boolean }>
  get (id: string): Promise<Command | undefined>
  list (deviceId: string, limit: number, after?: [string, string]): Promise<Command[]>
  /** Queued, unexpired commands of many devices (one query), oldest first, at most `limit` each (delivered when they subscribe). */
  pendingMany (deviceIds: string[], limit?: number): Promise<Map<string, Command[]>>
  markSent (ids: string[]): Promise<void>
  /** A device's result: completes a queued or sent, unexpired command of that device. */
  complete (deviceId: string, id: string, status: 'succeeded' | 'failed', result: unknown): Promise<{ outcome: ResultOutcome, correlationId?: string | null }>
  /** Expires every open command past its TTL; returns how many. */
  expire (): Promise<number>
}

const IDEMPOTENCY_WINDOW = "interval '1 day'"

export function createCommandStore (pool: pg.Pool): CommandStore {
  return {
    async create (deviceId, cmd) {
      return await withTransaction(pool, async (client) => {
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

    async get (id) {
      if (!isUuid(id)) return undefined
      const { rows } = await pool.query<Row>('SELECT * FROM commands WHERE id = $1', [id])
      return rows[0] ? toCommand(rows[0]) : undefined
    },

    async list (deviceId, limit, after) {
      const { rows } = await pool.query<Row>(
        `SELECT * FROM commands WHERE device_id = $1 AND ($2::timestamptz IS NULL OR (created_at, id) > ($2::timestamptz, $3::uuid))
          ORDER BY created_at, id LIMIT $4`, [deviceId, after?.[0] ?? null, after?.[1] ?? null, limit])
      return rows.map(toCommand)
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
      if (ids.length === 0) return
      await pool.query('UPDATE commands SET status = \'sent\', sent_at = now() WHERE id = ANY($1::uuid[]) AND status = \'queued\'', [ids])
    },

    async complete (deviceId, id, status, result) {
      if (!isUuid(id)) return { outcome: 'unknown' }
      const { rows } = await pool.query<{ id: string, correlation_id: string | null }>(
        `WITH done AS (
           UPDATE commands SET status = $3, result = $4, completed_at = now()
            WHERE id = $1 AND device_id = $2 AND status IN ('queued', 'sent') AND expires_at > now()
            RETURNING id, correlation_id)
         SELECT id, correlation_id, pg_notify('${CHANNELS.commandDone}', id::text) FROM done`,
        [id, deviceId, status, result === undefined ? null : JSON.stringify(result)])
      if (rows.length === 1) return { outcome: 'completed', correlationId: rows[0]!.correlation_id }
      const { rows: existing } = await pool.query('SELECT 1 FROM commands WHERE id = $1 AND device_id = $2', [id, deviceId])
      return { outcome: existing.length === 1 ? 'finished' : 'unknown' }
    },

    async expire () {
      const { rows } = await pool.query(
        // In batches, so a large backlog never runs into the statement timeout.
        `WITH gone AS (
           UPDATE commands SET status = 'expired', completed_at = now()
            WHERE id IN (SELECT id FROM commands WHERE status IN ('queued', 'sent') AND expires_at <= now() LIMIT 5000)
              AND status IN ('queued', 'sent')
            RETURNING id)
         SELECT pg_notify('${CHANNELS.commandDone}', id::text) FROM gone`)
      return rows.length
    }
  }
}

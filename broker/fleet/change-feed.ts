// PostgreSQL LISTEN/NOTIFY on one dedicated connection: how replicas tell
// each other that something changed (a command finished, a device's
// credentials changed) without polling. Reconnects with backoff; while it is
// down, nothing is lost that matters: waiters time out and re-read the
// database, credential caches expire after AUTH_CACHE_TTL_MS.
import pg from 'pg'
import type { Logger } from '../logger.js'
import type { ChangeFeed } from '../../devices/dispatch.js'
import { backoffDelay } from '../backoff.js'

export interface PgChangeFeed extends ChangeFeed {
  readonly connected: boolean
  close (): Promise<void>
}

export async function startChangeFeed (url: string, log: Logger): Promise<PgChangeFeed> {
  const handlers = new Map<string, Array<(payload: string) => void>>()
  let client: pg.Client | undefined
  let connected = false
  let closed = false
  let attempt = 0
  let retryTimer: NodeJS.Timeout | undefined

  async function connect (): Promise<void> {
    const c = new pg.Client({ connectionString: url, application_name: 'fleetgate-listen' })
    c.on('notification', (n) => { for (const h of handlers.get(n.channel) ?? []) h(n.payload ?? '') })
    c.on('error', (err) => { log.warn({ err: { message: err.message } }, 'change feed connection lost') })
    c.on('end', () => {
      connected = false
      if (!closed) schedule()
    })
    await c.connect()
    // close() may have run while this connection was being made.
    if (closed) { await c.end().catch(() => {}); return }
    for (const channel of handlers.keys()) await c.query(`LISTEN ${pg.escapeIdentifier(channel)}`)
    client = c
    connected = true
    attempt = 0
  }

  function schedule () {
    if (closed) return
    const delay = backoffDelay(attempt++, { baseMs: 100, maxMs: 5000, jitter: 'equal' })
    retryTimer = setTimeout(() => { connect().catch(() => schedule()) }, delay)
  }

  await connect()
  return {
    get connected () { return connected },
    on (channel, handler) {
      const list = handlers.get(channel)
      if (list) { list.push(handler); return }
      handlers.set(channel, [handler])
      if (connected) client!.query(`LISTEN ${pg.escapeIdentifier(channel)}`).catch((err: Error) => log.warn({ err: { message: err.message }, channel }, 'LISTEN failed'))
    },
    async close () {
      closed = true
      if (retryTimer) clearTimeout(retryTimer)
      await client?.end().catch(() => {})
    }
  }
}

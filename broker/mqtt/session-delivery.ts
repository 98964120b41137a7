// What a device finds waiting when it subscribes (issue 3), and the order it
// gets things in (connack-first.ts): its desired config and queued commands
// come from PostgreSQL (devices/device-sessions.ts), delivered when it
// subscribes and when a persistent session is resumed (which restores
// subscriptions without a SUBSCRIBE, so clientReady is watched as well).
// One delivery at a time per connection: SUBSCRIBEs arriving meanwhile are
// folded into one follow-up, so a client cannot flood the database.
import type { Client } from 'aedes'
import type { FleetClient } from './fleet-client.js'
import { subscriptionFilters } from './aedes-internals.js'
import type { Logger } from '../logger.js'
import type { DeviceSessions } from '../../devices/device-sessions.js'

export interface SessionDelivery {
  /** The client subscribed to these filters (or resumed a session holding them). */
  subscribed (client: FleetClient, filters: string[]): void
  /** As when it subscribes: after deliveries could not be made (Redis was away). */
  redeliver (client: Client): void
}

export function createSessionDelivery (deps: { sessions?: DeviceSessions, log: Logger }): SessionDelivery {
  const delivering = new WeakMap<FleetClient, Set<string> | null>()
  function subscribed (client: FleetClient, filters: string[]) {
    const sessions = deps.sessions
    if (!sessions || client.fgDeviceId === undefined || filters.length === 0) return
    if (delivering.has(client)) {
      const next = delivering.get(client) ?? new Set<string>()
      for (const f of filters) next.add(f)
      delivering.set(client, next)
      return
    }
    delivering.set(client, null)
    sessions.subscribed(client.fgDeviceId, filters).catch((err: Error) => {
      deps.log.warn({ deviceId: client.fgDeviceId, err: { message: err.message } }, 'could not deliver config and commands on subscribe')
    }).finally(() => {
      const next = delivering.get(client)
      delivering.delete(client)
      if (next && !client.closed) subscribed(client, [...next])
    })
  }
  return {
    subscribed,
    redeliver (client) { subscribed(client as FleetClient, subscriptionFilters(client)) }
  }
}

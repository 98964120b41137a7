// Session Expiry beyond what aedes 2.0.0-beta.1 does (issue 12):
//
// - A 3.1.1 persistent session (Clean Session 0) has no expiry in the
//   protocol and aedes keeps it for ever: subscriptions and queued QoS 1/2
//   messages of a device that never comes back pile up. Here it ends
//   MQTT_SESSION_EXPIRY_DEFAULT_SECONDS after its connection did (0: never),
//   as a v5 session with that Session Expiry Interval would, unless the
//   client id connects again first (on any replica).
// - aedes times a v5 session's expiry (and a delayed will) on the replica
//   where the connection ended, and cancels it only when the client id
//   connects again to that same replica. In cluster mode a device that
//   resumes its session on another replica would have it wiped (and its
//   will published) by the first one when the timer fires. Every replica
//   hears aedes' `$SYS/{broker}/new/clients` announcements, so each cancels
//   its own timers for an id that connected anywhere.
//
// Timers live in the process: a restart forgets them (the 3.1.1 session then
// lives on until a clean connect or the device is deleted, as before).
import type { Aedes, Client } from 'aedes'
import type { FleetClient } from './fleet-client.js'
import type { HookGuard } from './hook-guard.js'
import type { ExactlyOnce } from './qos2-exactly-once.js'
import { cancelSessionTimers, clientById, persistenceOf, protocolVersionOf } from './aedes-internals.js'
import { endStoredSession, type SessionPersistence } from './session-end.js'
import type { Logger } from '../logger.js'

// setTimeout's longest delay; longer ones are chained.
const MAX_TIMER_MS = 2 ** 31 - 1

export interface SessionExpiry {
  /** 3.1.1 persistent sessions waiting to expire. */
  readonly pending: number
  close (): void
}

export function watchSessionExpiry (deps: { aedes: Aedes, defaultSeconds: number, exactlyOnce: ExactlyOnce, guard: HookGuard, log: Logger }): SessionExpiry {
  const { aedes, guard, log } = deps
  const timers = new Map<string, NodeJS.Timeout>()
  const cancel = (id: string) => {
    const t = timers.get(id)
    if (t) { clearTimeout(t); timers.delete(id) }
  }
  const arm = (client: Client, remainingMs: number) => {
    const t = setTimeout(() => {
      if (remainingMs > MAX_TIMER_MS) { arm(client, remainingMs - MAX_TIMER_MS); return }
      timers.delete(client.id)
      if (clientById(aedes, client.id)) return // connected again meanwhile
      guard.run('sessionExpiry', null, () => {
        deps.exactlyOnce.closed(client, true)
        endStoredSession(persistenceOf<SessionPersistence>(aedes), client.id).catch((err: Error) => {
          log.warn({ clientId: client.id, err: { message: err.message } }, 'could not end an expired 3.1.1 session')
        })
        log.debug({ clientId: client.id }, '3.1.1 persistent session expired')
      })
    }, Math.min(remainingMs, MAX_TIMER_MS))
    t.unref()
    timers.set(client.id, t)
  }

  aedes.on('clientDisconnect', (client: FleetClient) => guard.run('clientDisconnect', client, () => {
    if (deps.defaultSeconds <= 0 || protocolVersionOf(client) === 5 || client.clean) return
    // A newer connection took the session over: it is not ending.
    if (client.fgTakenOver) return
    cancel(client.id)
    arm(client, deps.defaultSeconds * 1000)
  }))
  aedes.on('client', (client) => cancel(client.id))
  // Any replica's new connection (this one's too): its session is live again.
  aedes.subscribe('$SYS/+/new/clients', (packet: { topic: string, payload: Buffer | string }, cb: () => void) => {
    const id = packet.payload.toString()
    cancel(id)
    if (!packet.topic.startsWith(`$SYS/${aedes.id}/`)) cancelSessionTimers(aedes, id)
    cb()
  }, () => {})

  return {
    get pending () { return timers.size },
    close () {
      for (const t of timers.values()) clearTimeout(t)
      timers.clear()
    }
  }
}

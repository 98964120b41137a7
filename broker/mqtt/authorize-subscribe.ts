// aedes' authorizeSubscribe and authorizeForward hooks (issue 2): a device
// may subscribe only to its own config and commands (devices/{id}/config,
// devices/{id}/commands/+ or devices/{id}/#); any other filter is refused in
// the SUBACK (0x80 for 3.1.1, 0x87 for 5). Whatever it subscribed to, it
// receives only its config and commands, never telemetry or results; an
// anonymous client never receives anything under devices/.
import type { PublishPacket, Subscription } from 'aedes'
import type { FleetClient } from './fleet-client.js'
import type { HookGuard } from './hook-guard.js'
import { anonymousMayReceive, anonymousMaySubscribe, deviceMayReceive, deviceMaySubscribe } from './topic-acl.js'
import type { Metrics } from '../metrics.js'

export interface AuthorizeSubscribeDeps {
  guard: HookGuard
  metrics: Metrics
  sampled (key: string, fields: Record<string, unknown>, msg: string): void
}

export function createAuthorizeSubscribe (deps: AuthorizeSubscribeDeps) {
  const { guard, metrics } = deps
  return {
    authorizeSubscribe (client: FleetClient, sub: Subscription, done: (err: Error | null, sub: Subscription | null) => void) {
      guard.run('authorizeSubscribe', client, () => {
        const ok = client.fgDeviceId !== undefined
          ? deviceMaySubscribe(client.fgDeviceId, sub.topic)
          : client.fgAnonymous === true && anonymousMaySubscribe(sub.topic)
        if (ok) return done(null, sub)
        metrics.aclRefusals.inc({ action: 'subscribe' })
        deps.sampled('subscribe_refused', { deviceId: client.fgDeviceId, clientId: client.id, filter: sub.topic }, 'subscription refused')
        done(null, null) // SUBACK failure for this filter
      })
    },

    authorizeForward (client: FleetClient, packet: PublishPacket): PublishPacket | null {
      // On an error the message is not forwarded to this client (whose
      // connection is closed); other subscribers are unaffected.
      return guard.run('authorizeForward', client, () => {
        const ok = client.fgDeviceId !== undefined ? deviceMayReceive(client.fgDeviceId, packet.topic) : anonymousMayReceive(packet.topic)
        return ok ? packet : null
      }, null)
    }
  }
}

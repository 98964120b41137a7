// DeviceDispatch on this process's aedes: a message for a device is published
// on its own topic (only that device may subscribe there, see topic-acl.ts).
// In cluster mode cluster-dispatch.ts wraps it to reach other replicas.
//
// MQTT 5 devices get the message's meaning in properties (3.1.1 ones the
// same payload without them): a config carries Content Type
// application/json; a command carries its remaining TTL as Message Expiry
// Interval (so it is never delivered late from an offline queue), Response
// Topic devices/{id}/commands/{commandId}/result and the command id as
// Correlation Data.
import type { Aedes, Client, PublishPacket } from 'aedes'
import { endStoredSession, type SessionPersistence } from './session-end.js'
import type { LocalDispatch } from '../fleet/cluster-dispatch.js'
import { clientById, disconnectWith, persistenceOf, subscriptionFilters } from './aedes-internals.js'
import { REASON } from './reason-codes.js'
import { coversCommands, coversConfig, parseDeviceDelivery, topics } from '../../devices/topics.js'

// A connection is given each config version and each command once: a push
// racing with the delivery made when the device subscribed (both read the
// same row) would otherwise send it twice. Kept per connection object, so a
// new connection gets what is current again.
interface Sent { configVersion: number, commands: Set<string> }

/**
 * TCP_NODELAY on a connection that is sent a config or a command (issue 15):
 * with Nagle's algorithm that PUBLISH waits for the device's delayed ACK of
 * the previous packet (up to 40 ms on Linux; ~80 ms of a command's round
 * trip with the result's own wait). Set here rather than on every accepted
 * socket: on telemetry-only connections it measured ~10% more broker CPU per
 * message (more, smaller segments) for no latency gain.
 */
function noDelay (client: Client): void {
  (client.conn as { setNoDelay?: (on: boolean) => void } | undefined)?.setNoDelay?.(true)
}

/** MQTT 5 properties of a message for a device (ignored when written to a 3.1.1 client). */
export function deliveryProperties (deviceId: string, topic: string, payload: unknown, now = Date.now()): PublishPacket['properties'] | undefined {
  const dest = parseDeviceDelivery(deviceId, topic)
  if (!dest) return undefined
  if (dest.kind === 'config') return { contentType: 'application/json', payloadFormatIndicator: true }
  const properties: NonNullable<PublishPacket['properties']> = {
    contentType: 'application/json',
    payloadFormatIndicator: true,
    responseTopic: topics.commandResult(deviceId, dest.commandId),
    correlationData: Buffer.from(dest.commandId, 'utf8')
  }
  const expiresAt = Date.parse(String((payload as { expiresAt?: unknown }).expiresAt))
  if (Number.isFinite(expiresAt)) properties.messageExpiryInterval = Math.max(1, Math.ceil((expiresAt - now) / 1000))
  return properties
}

export function createDeviceDispatch (aedes: Aedes, onDelivered?: (kind: 'config' | 'command') => void): LocalDispatch {
  const sent = new WeakMap<Client, Sent>()
  return {
    has (deviceId) {
      const client = clientById(aedes, deviceId)
      return client !== undefined && client.connected
    },
    async deliver (deviceId, topic, payload) {
      const client = clientById(aedes, deviceId)
      if (!client || !client.connected) return false
      const filters = subscriptionFilters(client)
      const isConfig = topic === topics.config(deviceId)
      const subscribed = filters.some((f) => isConfig ? coversConfig(deviceId, f) : coversCommands(deviceId, f))
      if (!subscribed) return false
      let mine = sent.get(client)
      if (!mine) { mine = { configVersion: -1, commands: new Set() }; sent.set(client, mine); noDelay(client) }
      const previousVersion = mine.configVersion
      if (isConfig) {
        const version = (payload as { version?: unknown }).version
        if (typeof version === 'number') {
          if (version <= mine.configVersion) return true // this connection has it (or a newer one)
          mine.configVersion = version
        }
      } else {
        if (mine.commands.has(topic)) return true
        mine.commands.add(topic)
        // Only recent commands can race; a long-lived connection keeps a bounded set.
        if (mine.commands.size > 1000) mine.commands.delete(mine.commands.values().next().value!)
      }
      const properties = deliveryProperties(deviceId, topic, payload)
      try {
        await new Promise<void>((resolve, reject) => {
          aedes.publish({ cmd: 'publish', topic, payload: Buffer.from(JSON.stringify(payload)), qos: 1, retain: false, dup: false, ...(properties ? { properties } : {}) }, (err) => err ? reject(err) : resolve())
        })
      } catch (err) {
        if (isConfig) mine.configVersion = previousVersion; else mine.commands.delete(topic)
        throw err
      }
      onDelivered?.(isConfig ? 'config' : 'command')
      return true
    },
    async disconnect (deviceId) {
      // Disabled or deleted through the API: a v5 device is told (0x98).
      const client = clientById(aedes, deviceId) as (Client & { fgReason?: string }) | undefined
      if (!client) return
      client.fgReason ??= 'admin_action'
      await new Promise<void>((resolve) => disconnectWith(client, REASON.ADMINISTRATIVE_ACTION, 'administrative action', resolve))
    },
    async endSession (deviceId) {
      await this.disconnect(deviceId)
      await endStoredSession(persistenceOf<SessionPersistence>(aedes), deviceId)
    }
  }
}

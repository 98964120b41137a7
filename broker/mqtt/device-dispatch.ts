// DeviceDispatch on this process's aedes: a message for a device is published
// on its own topic (only that device may subscribe there, see topic-acl.ts).
// In cluster mode cluster-dispatch.ts wraps it to reach other replicas.
import type { Aedes, Client } from 'aedes'
import { endStoredSession, type SessionPersistence } from './session-end.js'
import type { LocalDispatch } from '../fleet/cluster-dispatch.js'
import { coversCommands, coversConfig } from '../../devices/device-sessions.js'

type Clients = Record<string, Client & { subscriptions: Record<string, unknown> }>

// A connection is given each config version and each command once: a push
// racing with the delivery made when the device subscribed (both read the
// same row) would otherwise send it twice. Kept per connection object, so a
// new connection gets what is current again.
interface Sent { configVersion: number, commands: Set<string> }

export function createDeviceDispatch (aedes: Aedes, onDelivered?: (kind: 'config' | 'command') => void): LocalDispatch {
  const clients = () => (aedes as unknown as { clients: Clients }).clients
  const sent = new WeakMap<Client, Sent>()
  return {
    has (deviceId) {
      const client = clients()[deviceId]
      return client !== undefined && client.connected
    },
    async deliver (deviceId, topic, payload) {
      const client = clients()[deviceId]
      if (!client || !client.connected) return false
      const filters = Object.keys(client.subscriptions)
      const isConfig = topic.endsWith('/config')
      const subscribed = filters.some((f) => isConfig ? coversConfig(deviceId, f) : coversCommands(deviceId, f))
      if (!subscribed) return false
      let mine = sent.get(client)
      if (!mine) { mine = { configVersion: -1, commands: new Set() }; sent.set(client, mine) }
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
      try {
        await new Promise<void>((resolve, reject) => {
          aedes.publish({ cmd: 'publish', topic, payload: Buffer.from(JSON.stringify(payload)), qos: 1, retain: false, dup: false }, (err) => err ? reject(err) : resolve())
        })
      } catch (err) {
        if (isConfig) mine.configVersion = previousVersion; else mine.commands.delete(topic)
        throw err
      }
      onDelivered?.(isConfig ? 'config' : 'command')
      return true
    },
    async disconnect (deviceId) {
      const client = clients()[deviceId]
      if (client) await new Promise<void>((resolve) => client.close(() => resolve()))
    },
    async endSession (deviceId) {
      await this.disconnect(deviceId)
      // aedes.persistence is public API; its type definitions do not declare it.
      await endStoredSession((aedes as unknown as { persistence: SessionPersistence }).persistence, deviceId)
    }
  }
}

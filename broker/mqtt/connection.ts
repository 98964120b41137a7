// One new connection, before aedes reads its CONNECT: the listeners
// (listeners.ts) hand every socket here. It is given to aedes, then fitted
// with what must hold for its whole life: the packet size limit and the
// protocol rules at the parser (packet-size-limit.ts), CONNACK first
// (connack-first.ts), null-prototype maps and reason-coded DISCONNECTs
// (aedes-internals.ts).
import type { IncomingMessage } from 'node:http'
import type { Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import type { Aedes } from 'aedes'
import type { FleetClient } from './fleet-client.js'
import type { HookGuard } from './hook-guard.js'
import { holdUntilReady, releaseHeld } from './connack-first.js'
import { carryAllSubscriptionIdentifiers } from './subscription-identifiers.js'
import { enforceProtocolRules, limitPacketSize } from './packet-size-limit.js'
import type { ProtocolViolationError } from './protocol-rules.js'
import { hardenClient, sendDisconnectOnceConnackWritten, disconnectBeforeDestroy } from './aedes-internals.js'
import { REASON } from './reason-codes.js'
import type { Metrics } from '../metrics.js'
import type { Logger } from '../logger.js'

export interface ConnectionDeps {
  aedes: Aedes
  maxPacketBytes: number
  guard: HookGuard
  metrics: Metrics
  log: Logger
  sampled (key: string, fields: Record<string, unknown>, msg: string): void
}

export function createConnectionHandler (deps: ConnectionDeps): (conn: Duplex, req?: IncomingMessage, overLimit?: boolean) => FleetClient {
  const { metrics, guard, sampled, maxPacketBytes } = deps
  return function handle (conn, req, overLimit) {
    const client = (deps.aedes.handle as (c: Duplex, r?: IncomingMessage) => FleetClient)(conn, req)
    // Over MQTT_MAX_CONNECTIONS (listeners.ts): refused at its CONNECT.
    if (overLimit) client.fgOverLimit = true
    hardenClient(client)
    sendDisconnectOnceConnackWritten(client)
    // CONNACK, then the stored session, then live messages (connack-first.ts).
    holdUntilReady(client, (packet) => {
      metrics.outboundDiscarded.inc({ reason: 'queue_full' })
      sampled('outbound_discarded:queue_full', { clientId: client.id, topic: packet.topic, reason: 'queue_full' }, 'message not sent to a client: over the limits it set (MQTT 5)')
    })
    // Every matching Subscription Identifier on the one copy delivered (v5).
    carryAllSubscriptionIdentifiers(client)
    conn.once('close', () => guard.run('connection', client, () => releaseHeld(client, false)))
    try {
      limitPacketSize(client, maxPacketBytes, onOversized)
      enforceProtocolRules(client, onViolation)
    } catch (err) {
      // An aedes without the parser this relies on: refuse service rather
      // than run without the limit (or crash on every connection).
      deps.log.error({ err }, 'packet size limit unavailable; connection closed')
      conn.destroy()
    }
    return client
    function onViolation (err: ProtocolViolationError) {
      client.fgReason = 'protocol_violation'
      metrics.protocolViolations.inc({ rule: err.rule })
      sampled(`protocol_violation:${err.rule}`, { deviceId: client.fgDeviceId, clientId: client.id, remote: client.fgRemote ?? (conn as Socket).remoteAddress, rule: err.rule, err: err.message }, 'protocol violation; connection closed')
    }
    function onOversized (cmd: string | undefined, bytes: number) {
      client.fgReason = 'packet_too_large'
      metrics.oversizedPackets.inc()
      sampled('packet_too_large', { clientId: client.id, remote: client.fgRemote ?? (conn as Socket).remoteAddress, cmd, bytes, max: maxPacketBytes }, 'packet too large; connection closed')
      // A v5 client whose CONNACK is out is told why [MQTT-3.2.2-15] before
      // the close (the parser's error destroys the connection in this tick).
      disconnectBeforeDestroy(client, REASON.PACKET_TOO_LARGE)
    }
  }
}

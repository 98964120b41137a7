// Protocol rules that mqtt-packet's parser and aedes 1.2 leave unchecked
// (issue 11). Each one lets a client put the broker in a state the spec
// rules out, so a packet that breaks one closes its connection before aedes
// sees it: the spec's own reaction ("the Server MUST close the Network
// Connection", [MQTT-4.8.0-1]).
//
// - A will with QoS 3 was accepted with CONNACK 0; when the will fired, the
//   publish path indexed its per-QoS counters with 3 and threw, stopping the
//   whole process. In anonymous mode a retained QoS 3 will disconnected every
//   subscriber of its topic. [MQTT-3.1.2-14]
// - A QoS 1/2 PUBLISH with packet id 0 was acknowledged and stored; SUBSCRIBE,
//   UNSUBSCRIBE and the acknowledgements with id 0 were answered.
//   [MQTT-2.3.1-1]
// - An UNSUBSCRIBE with no topic filter was answered. [MQTT-3.10.3-2]
// - A SUBSCRIBE with no topic filter. [MQTT-3.8.3-3]
// - U+0000 in a topic or topic filter (mqtt-packet accepts it; PostgreSQL
//   text cannot hold it, so a dead letter naming that topic could never be
//   written). [MQTT-4.7.3-2]
// - A QoS 0 PUBLISH with DUP set was stored. [MQTT-3.3.1-2]
// Found by the property-based fuzzer (test/faults/mqtt-property-fuzz.test.ts),
// with two more checked in packet-size-limit.ts: ill-formed UTF-8 in a
// string (`invalid_utf8`, [MQTT-1.5.3-1]) and an unsupported protocol level
// (`protocol_level`, answered CONNACK 0x01 first, [MQTT-3.1.2-2]).
import type { Packet } from 'mqtt-packet'

/** Stable codes, used as the `rule` label of fleetgate_mqtt_protocol_violations_total. */
export type ProtocolRule =
  | 'will_qos_invalid'
  | 'packet_id_zero'
  | 'subscribe_empty'
  | 'unsubscribe_empty'
  | 'topic_nul'
  | 'dup_qos0'
  | 'invalid_utf8'
  | 'protocol_level'

export class ProtocolViolationError extends Error {
  override name = 'ProtocolViolationError'
  constructor (readonly rule: ProtocolRule, message: string) { super(message) }
}

// Packets that carry a packet identifier whatever their QoS.
const ALWAYS_ID = new Set(['subscribe', 'unsubscribe', 'puback', 'pubrec', 'pubrel', 'pubcomp'])

const hasNul = (s: unknown): boolean => typeof s === 'string' && s.includes('\u0000')

/** The rule a parsed packet breaks, or undefined. Cheap: a few property reads per packet. */
export function brokenRule (packet: Packet): ProtocolViolationError | undefined {
  switch (packet.cmd) {
    case 'publish':
      if (packet.qos > 0 && !packet.messageId) return new ProtocolViolationError('packet_id_zero', `QoS ${packet.qos} PUBLISH with packet id 0 [MQTT-2.3.1-1]`)
      if (packet.qos === 0 && packet.dup) return new ProtocolViolationError('dup_qos0', 'QoS 0 PUBLISH with DUP set [MQTT-3.3.1-2]')
      if (hasNul(packet.topic)) return new ProtocolViolationError('topic_nul', 'topic contains U+0000 [MQTT-4.7.3-2]')
      return undefined
    case 'connect': {
      const will = packet.will
      if (will) {
        if ((will.qos as number) > 2) return new ProtocolViolationError('will_qos_invalid', `will QoS ${will.qos as number} is reserved [MQTT-3.1.2-14]`)
        if (hasNul(will.topic)) return new ProtocolViolationError('topic_nul', 'will topic contains U+0000 [MQTT-4.7.3-2]')
      }
      return undefined
    }
    case 'subscribe':
      if (!packet.messageId) return new ProtocolViolationError('packet_id_zero', 'SUBSCRIBE with packet id 0 [MQTT-2.3.1-1]')
      if (packet.subscriptions.length === 0) return new ProtocolViolationError('subscribe_empty', 'SUBSCRIBE without a topic filter [MQTT-3.8.3-3]')
      if (packet.subscriptions.some((s) => hasNul(s.topic))) return new ProtocolViolationError('topic_nul', 'topic filter contains U+0000 [MQTT-4.7.3-2]')
      return undefined
    case 'unsubscribe':
      if (!packet.messageId) return new ProtocolViolationError('packet_id_zero', 'UNSUBSCRIBE with packet id 0 [MQTT-2.3.1-1]')
      if (packet.unsubscriptions.length === 0) return new ProtocolViolationError('unsubscribe_empty', 'UNSUBSCRIBE without a topic filter [MQTT-3.10.3-2]')
      if (packet.unsubscriptions.some(hasNul)) return new ProtocolViolationError('topic_nul', 'topic filter contains U+0000 [MQTT-4.7.3-2]')
      return undefined
    default:
      if (ALWAYS_ID.has(packet.cmd) && !(packet as { messageId?: number }).messageId) {
        return new ProtocolViolationError('packet_id_zero', `${packet.cmd.toUpperCase()} with packet id 0 [MQTT-2.3.1-1]`)
      }
      return undefined
  }
}

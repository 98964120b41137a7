// MQTT_MAX_PACKET_BYTES: a packet whose declared size is too large closes
// the connection as soon as its fixed header (type and remaining length) is
// read — before the parser collects its body — so a client cannot make the
// broker hold a 256 MB packet in memory (MQTT allows up to 256 MB).
//
// aedes has no such option and parses with mqtt-packet; the check wraps that
// parser's length step on each connection (the one place the declared size
// is known). What is buffered before it is at most one socket read.
//
// enforceProtocolRules() wraps the same parser's last step, where a packet is
// complete and about to be handed to aedes, to close the connection on a
// packet that breaks one of the rules in protocol-rules.ts. It also wraps
// the string step: mqtt-packet decodes strings with toString('utf8'), which
// silently turns ill-formed UTF-8 into U+FFFD, so a topic, will topic or
// client id that is not UTF-8 [MQTT-1.5.3-1] is caught there; and the error
// step, so a CONNECT with a protocol level this broker does not speak gets
// CONNACK 0x01 before the close [MQTT-3.1.2-2] (mqtt-packet refuses such a
// CONNECT before aedes could answer it). All of this reaches into
// mqtt-packet's parser (private fields), through aedes-internals.ts.
//
// The size counted is the whole packet, fixed header included, as MQTT 5's
// Maximum Packet Size counts it [MQTT-3.2.2-15] (advertised in CONNACK as
// MQTT_MAX_PACKET_BYTES).
import { isUtf8 } from 'node:buffer'
import type { Client } from 'aedes'
import type { Packet } from 'mqtt-packet'
import { brokenRule, ProtocolViolationError } from './protocol-rules.js'
import { parserOf, type PacketParser } from './aedes-internals.js'

// CONNACK, return code 1: unacceptable protocol level (MQTT 3.1.1 section 3.2.2.3).
const CONNACK_UNACCEPTABLE_PROTOCOL = Buffer.from([0x20, 0x02, 0x00, 0x01])

/** The whole packet's size from its remaining length: 1 type byte, 1–4 length bytes, the rest [MQTT-2.2.3]. */
export function packetSize (remaining: number): number {
  return 1 + (remaining < 128 ? 1 : remaining < 16_384 ? 2 : remaining < 2_097_152 ? 3 : 4) + remaining
}

export class PacketTooLargeError extends Error {
  override name = 'PacketTooLargeError'
  readonly code = 'packet_too_large'
}

export function limitPacketSize (client: Client, maxBytes: number, onRefused: (cmd: string | undefined, bytes: number) => void): void {
  const parser = parserOf(client)
  const parseLength = parser._parseLength
  parser._parseLength = function limitedParseLength (this: PacketParser) {
    const complete = parseLength.call(this)
    if (complete && packetSize(this.packet.length) > maxBytes) {
      const size = packetSize(this.packet.length)
      onRefused(this.packet.cmd, size)
      this._emitError(new PacketTooLargeError(`${this.packet.cmd ?? 'packet'} of ${size} bytes exceeds MQTT_MAX_PACKET_BYTES (${maxBytes})`))
      return false
    }
    return complete
  }
}

/**
 * Closes the connection (through the parser's error path, as aedes does for
 * a malformed packet) when a complete packet breaks a protocol rule, before
 * aedes acts on it.
 */
export function enforceProtocolRules (client: Client, onViolation: (err: ProtocolViolationError) => void): void {
  const parser = parserOf(client)
  // Set by the string step, read when the packet is complete.
  let illFormed: ProtocolViolationError | undefined
  const parseString = parser._parseString
  parser._parseString = function checkedParseString (this: PacketParser, maybeBuffer?: boolean) {
    const lengthAt = this._pos
    const result = parseString.call(this, maybeBuffer)
    // Only a decoded U+FFFD can hide ill-formed bytes: the raw bytes are
    // looked at in that (rare) case only.
    if (result !== null && result.includes('\uFFFD') && !isUtf8(this._list.slice(lengthAt + 2, this._pos))) {
      illFormed ??= new ProtocolViolationError('invalid_utf8', `${this.packet.cmd ?? 'packet'} string is not well-formed UTF-8 [MQTT-1.5.3-1]`)
    }
    return result
  }
  const emitError = parser._emitError
  parser._emitError = function answeredEmitError (this: PacketParser, err: Error) {
    if (this.packet.cmd === 'connect' && err.message === 'Invalid protocol version' && !client.connected) {
      client.conn.write(CONNACK_UNACCEPTABLE_PROTOCOL)
      const violation = new ProtocolViolationError('protocol_level', 'unsupported protocol level; CONNACK 0x01 sent [MQTT-3.1.2-2]')
      onViolation(violation)
      return emitError.call(this, violation)
    }
    return emitError.call(this, err)
  }
  const newPacket = parser._newPacket
  parser._newPacket = function checkedNewPacket (this: PacketParser) {
    const violation = illFormed ?? (this.packet.cmd === undefined ? undefined : brokenRule(this.packet as unknown as Packet))
    illFormed = undefined
    if (violation) {
      onViolation(violation)
      this._emitError(violation)
      return false
    }
    return newPacket.call(this)
  }
}

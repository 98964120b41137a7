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
// packet that breaks one of the rules in protocol-rules.ts. Both reach into
// mqtt-packet's parser (private fields); this module is the one place that does.
import type { Client } from 'aedes'
import type { Packet } from 'mqtt-packet'
import { brokenRule, type ProtocolViolationError } from './protocol-rules.js'

interface PacketParser {
  packet: { cmd?: string, length: number }
  _parseLength (): boolean
  _newPacket (): boolean
  _emitError (err: Error): void
}

function parserOf (client: Client): PacketParser {
  const parser = (client as unknown as { _parser?: PacketParser })._parser
  if (!parser || typeof parser._parseLength !== 'function' || typeof parser._newPacket !== 'function') {
    throw new Error('aedes client has no mqtt-packet parser (_parser._parseLength, _parser._newPacket): packet limits cannot be enforced with this aedes version')
  }
  return parser
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
    if (complete && this.packet.length > maxBytes) {
      onRefused(this.packet.cmd, this.packet.length)
      this._emitError(new PacketTooLargeError(`${this.packet.cmd ?? 'packet'} of ${this.packet.length} bytes exceeds MQTT_MAX_PACKET_BYTES (${maxBytes})`))
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
  const newPacket = parser._newPacket
  parser._newPacket = function checkedNewPacket (this: PacketParser) {
    const violation = this.packet.cmd === undefined ? undefined : brokenRule(this.packet as unknown as Packet)
    if (violation) {
      onViolation(violation)
      this._emitError(violation)
      return false
    }
    return newPacket.call(this)
  }
}

// MQTT_MAX_PACKET_BYTES: a packet whose declared size is too large closes
// the connection as soon as its fixed header (type and remaining length) is
// read — before the parser collects its body — so a client cannot make the
// broker hold a 256 MB packet in memory (MQTT allows up to 256 MB).
//
// aedes has no such option and parses with mqtt-packet; the check wraps that
// parser's length step on each connection (the one place the declared size
// is known). What is buffered before it is at most one socket read.
import type { Client } from 'aedes'

interface PacketParser {
  packet: { cmd?: string, length: number }
  _parseLength (): boolean
  _emitError (err: Error): void
}

export class PacketTooLargeError extends Error {
  override name = 'PacketTooLargeError'
  readonly code = 'packet_too_large'
}

export function limitPacketSize (client: Client, maxBytes: number, onRefused: (cmd: string | undefined, bytes: number) => void): void {
  const parser = (client as unknown as { _parser?: PacketParser })._parser
  if (!parser || typeof parser._parseLength !== 'function') {
    throw new Error('aedes client has no mqtt-packet parser: the packet size limit cannot be enforced with this aedes version')
  }
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

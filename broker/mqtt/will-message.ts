// A will is published as the PUBLISH its CONNECT described, minus what only
// a CONNECT may carry. aedes 2.0.0-beta.1 publishes the will's properties as
// they came, Will Delay Interval (0x18) included, which is not a PUBLISH
// property [MQTT-2.2.2-2]: strict v5 clients reject the packet as malformed
// (issue 12). Stripped here for every message aedes routes, so wills
// published by another replica's sweep and retained wills are covered too.
import type { PublishPacket } from 'aedes'

export function withoutWillOnlyProperties (packet: PublishPacket): PublishPacket {
  const properties = packet.properties as (PublishPacket['properties'] & { willDelayInterval?: number }) | undefined
  if (properties?.willDelayInterval === undefined) return packet
  const { willDelayInterval: _delay, ...rest } = properties
  // A copy: the will object itself stays as aedes stored it.
  return { ...packet, properties: rest }
}

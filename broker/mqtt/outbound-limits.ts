// The limits an MQTT 5 client sets on what it receives (issue 12), which the
// pinned aedes beta ignored and patches/aedes+2.0.0-beta.1.patch adds to its
// write path (every outbound PUBLISH: configs, commands, session replay,
// retained messages, wills):
//
// - Maximum Packet Size [MQTT-3.1.2-24]: a PUBLISH larger than the client's
//   maximum is not sent to it, and is treated as delivered [MQTT-3.1.2-25]
//   (a persistent session does not replay it). Counted as packet_too_large.
// - Receive Maximum [MQTT-3.3.4-9]: no more QoS 1/2 PUBLISHes unacknowledged
//   than the client allows; the rest wait, in order, for a PUBACK, PUBCOMP or
//   failed PUBREC. A session replay waits its turn; live messages wait in a
//   queue of up to 1000 per client, beyond which one is discarded (counted as
//   queue_full; as Mosquitto's max_queued_messages). While a replay waits,
//   live messages are held by connack-first.ts, bounded the same way.
//
// Here the discards are counted and a sample logged.
import type { Aedes } from 'aedes'
import { onPublishDiscarded } from './aedes-internals.js'
import type { FleetClient } from './fleet-client.js'
import type { HookGuard } from './hook-guard.js'
import type { Metrics } from '../metrics.js'

export function watchOutboundDiscards (deps: { aedes: Aedes, guard: HookGuard, metrics: Metrics, sampled (key: string, fields: Record<string, unknown>, msg: string): void }): void {
  onPublishDiscarded(deps.aedes, (client, packet, reason) => deps.guard.run('outboundDiscard', client, () => {
    deps.metrics.outboundDiscarded.inc({ reason })
    const c = client as FleetClient
    deps.sampled(`outbound_discarded:${reason}`, { clientId: c.id, deviceId: c.fgDeviceId, topic: packet.topic, reason }, 'message not sent to a client: over the limits it set (MQTT 5)')
  }))
}

// MQTT 5 Server Keep Alive (MQTT_SERVER_KEEPALIVE_SECONDS, 0: off): a v5
// client asking for a longer keep alive than that, or for none (0), is given
// that value in CONNACK [MQTT-3.2.2-21] and timed by it (1.5 times it without
// a packet: DISCONNECT 0x8D). aedes' own `keepaliveLimit` would do the same
// for v5 but also refuse every 3.1.1 CONNECT with keepalive 0 (return code
// 6), so it is not used: 3.1.1 clients keep the keep alive they asked for.
import type { Client } from 'aedes'
import { imposeServerKeepAlive } from './aedes-internals.js'

/** Called from preConnect, before aedes reads the keep alive of this CONNECT. */
export function applyServerKeepAlive (client: Client, packet: { protocolVersion?: number, keepalive?: number }, limitSeconds: number): void {
  if (limitSeconds <= 0 || packet.protocolVersion !== 5) return
  const asked = packet.keepalive ?? 0
  if (asked === 0 || asked > limitSeconds) imposeServerKeepAlive(client, limitSeconds)
}

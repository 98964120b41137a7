// What fleetgate attaches to an aedes client (one connection), shared by the
// hooks of this folder.
import type { Client } from 'aedes'

export type Listener = 'tcp' | 'tls' | 'ws'

export interface FleetClient extends Client {
  /** Set once authenticated as a device. */
  fgDeviceId?: string
  /** Set once accepted without credentials (MQTT_ALLOW_ANONYMOUS). */
  fgAnonymous?: boolean
  /** The CONNECT had an empty client id with CleanSession=0 ([MQTT-3.1.3-8]). */
  fgEmptyIdPersistent?: boolean
  /** Came in over MQTT_MAX_CONNECTIONS: its CONNECT is refused (v5: 0x97). */
  fgOverLimit?: boolean
  /** The CONNECT's protocol level (3, 4 or 5), known from preConnect on. */
  fgProtocol?: number
  /** A newer connection of the same id took this one over. */
  fgTakenOver?: boolean
  /** Why the connection ended (the `reason` label of fleetgate_mqtt_disconnects_total). */
  fgReason?: string
  fgRemote?: string
  /** The listener it came in on. */
  fgListener?: Listener
  /** MQTT 5 QoS 1 PUBLISHes accepted and not yet answered (its inbound Receive Maximum window). */
  fgQos1InFlight?: number
  /** Names in a verified client certificate (CN and SANs). */
  fgCertNames?: string[]
}

// aedes' events, turned into presence, metrics and logs (issue 2, issue 7):
// a device connecting or leaving is handed to presence (presence-tracker.ts),
// every disconnection is counted by reason, and a connection's waiting
// telemetry is dropped when it goes (the device retransmits). Each handler
// runs through the hook guard (hook-guard.ts).
//
// The `reason` label of fleetgate_mqtt_disconnects_total, and the DISCONNECT
// reason code a v5 client is sent when the broker ends the connection
// (reason-codes.ts DISCONNECT_REASON): taken_over 0x8E, server_shutdown
// 0x8B, admin_action 0x98, rate_limited 0x97, receive_maximum_exceeded 0x93,
// packet_too_large 0x95, keepalive_timeout 0x8D, topic_alias_invalid 0x94;
// slow_consumer gets none (it does not read its socket), nor do acl,
// protocol_violation, error, internal_error; clean and connection_lost are
// the client's doing.
import type { Socket } from 'node:net'
import type { Aedes, Subscription } from 'aedes'
import type { FleetClient } from './fleet-client.js'
import type { HookGuard, HookName } from './hook-guard.js'
import type { ExactlyOnce } from './qos2-exactly-once.js'
import type { SessionDelivery } from './session-delivery.js'
import { releaseHeld } from './connack-first.js'
import { sentDisconnect, disconnectBeforeDestroy } from './aedes-internals.js'
import { PacketTooLargeError } from './packet-size-limit.js'
import { ProtocolViolationError } from './protocol-rules.js'
import { REASON } from './reason-codes.js'
import type { TelemetryIntake } from '../ingest/telemetry-intake.js'
import type { PresenceTracker } from '../fleet/presence-tracker.js'
import type { Metrics } from '../metrics.js'
import type { Logger } from '../logger.js'

export interface ClientEventDeps {
  aedes: Aedes
  presence: PresenceTracker
  intake: TelemetryIntake
  delivery: SessionDelivery
  exactlyOnce: ExactlyOnce
  /** Errors aedes reports after answering them itself (a v5 PUBACK 0x87): not a reason to note a failure. */
  isAnswered (err: Error): boolean
  guard: HookGuard
  metrics: Metrics
  log: Logger
}

export function watchClientEvents (deps: ClientEventDeps): void {
  const { aedes, presence, metrics, log, guard } = deps
  const on = <A extends unknown[]>(event: string, hook: HookName, fn: (client: FleetClient, ...rest: A) => void) => {
    aedes.on(event as 'client', (...args: unknown[]) => {
      // aedes passes the client first, except for 'subscribe' and 'ping' (packet, client).
      const client = (event === 'subscribe' || event === 'ping' ? args[1] : args[0]) as FleetClient
      const rest = (event === 'subscribe' || event === 'ping' ? [args[0], ...args.slice(2)] : args.slice(1)) as A
      guard.run(hook, client, () => fn(client, ...rest))
    })
  }
  on('client', 'client', (client) => {
    metrics.connects.inc()
    metrics.connectedClients.set(aedes.connectedClients)
    if (client.fgDeviceId) presence.connected(client.fgDeviceId)
    log.debug({ clientId: client.id, remote: client.fgRemote }, 'client connected')
  })
  on('clientDisconnect', 'clientDisconnect', (client) => {
    const reason = client.fgReason ?? (sentDisconnect(client) ? 'clean' : 'connection_lost')
    metrics.disconnects.inc({ reason })
    metrics.connectedClients.set(aedes.connectedClients)
    if (client.fgDeviceId && !client.fgTakenOver) presence.disconnected(client.fgDeviceId, undefined, reason)
    // Its publishes still waiting for room will never be acknowledged: drop
    // them now (the device retransmits), so waiters stay bounded by live connections.
    deps.intake.cancel(client)
    // A session that ends with its connection takes its QoS 2 state along.
    deps.exactlyOnce.closed(client, client.clean)
    log.debug({ clientId: client.id, reason }, 'client disconnected')
  })
  // An MQTT 5 session that outlived its connection expired (aedes wiped the rest of it).
  on('sessionExpired', 'clientDisconnect', (client) => deps.exactlyOnce.closed(client, true))
  on('subscribe', 'subscribe', (client, subs: Subscription[]) => deps.delivery.subscribed(client, subs.map((s) => s.topic)))
  on('clientReady', 'clientReady', (client) => releaseHeld(client))
  on('clientReady', 'clientReady', (client) => deps.delivery.redeliver(client))
  on('keepaliveTimeout', 'keepaliveTimeout', (client) => {
    client.fgReason = 'keepalive_timeout'
    // aedes destroys the connection right after this event, in the same
    // tick; a v5 client is told why first (written at once, not corked).
    disconnectBeforeDestroy(client, REASON.KEEP_ALIVE_TIMEOUT)
  })
  on('clientError', 'clientError', (client, err: Error) => {
    if (deps.isAnswered(err)) return
    // aedes destroys a connection whose socket stayed full MQTT_DRAIN_TIMEOUT_MS.
    if (err.message === 'drain timeout' && client.fgReason === undefined) {
      client.fgReason = 'slow_consumer'
      log.info({ clientId: client.id, remote: client.fgRemote }, 'client did not read its socket in time; disconnected (slow consumer)')
    }
    if (/topic alias/.test(err.message)) client.fgReason ??= 'topic_alias_invalid'
    client.fgReason ??= 'error'
    log.debug({ clientId: client.id, err: err.message }, 'client error')
  })
  // aedes reports internal failures here (e.g. replaying wills); without a
  // listener an 'error' event would crash the process.
  aedes.on('error' as 'closed', ((err: Error) => log.error({ err }, 'aedes error')) as () => void)
  // Connections that end before a CONNECT was accepted, by reason: the
  // CONNECT deadline (slowloris, or a broker too busy to read it in time),
  // an oversized packet, or a protocol/socket error.
  on('connectionError', 'connectionError', (client, err: Error) => {
    const reason = err.message === 'connect did not arrive in time'
      ? 'connect_timeout'
      : err instanceof PacketTooLargeError
        ? 'packet_too_large'
        : err instanceof ProtocolViolationError
          ? 'protocol_violation'
          : 'code' in err && typeof err.code === 'string' && err.code.startsWith('E') ? 'socket_error' : 'protocol_error'
    metrics.connectionErrors.inc({ reason })
    const level = reason === 'connect_timeout' ? 'info' : 'debug'
    log[level]({ remote: client.fgRemote ?? (client.conn as Socket | undefined)?.remoteAddress, reason, err: err.message }, 'connection closed before CONNECT was accepted')
  })
  on('ping', 'ping', (client) => { if (client.fgDeviceId) presence.seen(client.fgDeviceId) })
}

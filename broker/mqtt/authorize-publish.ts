// aedes' authorizePublish hook: where a device's PUBLISH is judged and
// stored, and so where the two rules of DESIGN.md live. aedes writes PUBACK
// (PUBREC) only once this hook calls back, so the callback is held until the
// message is committed (ack after commit); while the ingest queue is full it
// is not called, aedes reads nothing more from that socket and TCP pushes
// back on the device (backpressure, not buffering).
//
// In order: the ACL (a device publishes only to its own telemetry,
// config/reported and commands/{id}/result), the inbound window (MQTT 5
// Receive Maximum), the publish budget, QoS 2 exactly once, then the hand-over:
// telemetry to the intake (broker/ingest/telemetry-intake.ts), reports and
// command results to the control plane (devices/device-sessions.ts).
//
// What a device hears back:
// | case                              | 3.1.1                 | 5                                         |
// |-----------------------------------|-----------------------|-------------------------------------------|
// | stored as telemetry / recorded    | PUBACK                | PUBACK 0x00                               |
// | dead-lettered (stored as invalid) | PUBACK                | PUBACK (PUBREC) 0x99 + reason string      |
// | topic not its own                 | connection closed     | PUBACK (PUBREC) 0x87, connection stays    |
// | over its publish budget           | held (backpressure)   | held (backpressure)                       |
// | … for DEVICE_THROTTLE_DISCONNECT_MS | connection closed   | DISCONNECT 0x97                           |
// | more in flight than Receive Maximum | (QoS 2 only) closed | DISCONNECT 0x93                           |
// | not stored (connection lost, shutdown) | no PUBACK        | no PUBACK                                 |
import type { PublishPacket } from 'aedes'
import type { FleetClient } from './fleet-client.js'
import type { HookGuard } from './hook-guard.js'
import type { ExactlyOnce } from './qos2-exactly-once.js'
import { createPublishBudget, type PublishBudget } from './connection-limits.js'
import { anonymousMayPublish, classifyTopic } from './topic-acl.js'
import { answerPublish, disconnectWith } from './aedes-internals.js'
import { REASON } from './reason-codes.js'
import type { TelemetryIntake } from '../ingest/telemetry-intake.js'
import type { PresenceTracker } from '../fleet/presence-tracker.js'
import type { Metrics } from '../metrics.js'
import type { Logger } from '../logger.js'
import type { DeviceSessions } from '../../devices/device-sessions.js'
import { DEVICES_PREFIX, parseDevicePublish, type DeviceTopic } from '../../devices/topics.js'

type Done = (err?: Error | null) => void

export interface PublishLimits {
  publishMessagesPerSecond: number
  publishBytesPerSecond: number
  throttleDisconnectMs: number
}

export interface AuthorizePublishDeps {
  intake: TelemetryIntake
  sessions?: DeviceSessions
  presence: PresenceTracker
  exactlyOnce: ExactlyOnce
  limits?: PublishLimits
  /** QoS 1 and 2 PUBLISHes a client may have unanswered (advertised to MQTT 5 clients as Receive Maximum). */
  receiveMaximum: number
  guard: HookGuard
  metrics: Metrics
  log: Logger
  sampled (key: string, fields: Record<string, unknown>, msg: string): void
}

export function createAuthorizePublish (deps: AuthorizePublishDeps) {
  const { metrics, log, guard, exactlyOnce, presence, limits: lim } = deps
  const budgets = new WeakMap<FleetClient, PublishBudget>()

  // The busiest function of the broker: a try/catch of its own rather than
  // guard.run(), which would cost a closure per message.
  function authorizePublish (client: FleetClient | null, packet: PublishPacket, done: Done) {
    try {
      judge(client, packet, done)
    } catch (err) {
      guard.fail('authorizePublish', client, err)
    }
  }

  function judge (client: FleetClient | null, packet: PublishPacket, done: Done) {
    const topic = packet.topic
    // No client: a will replayed by aedes for a connection that is gone (or
    // another broker's). Nothing without an authenticated device may write
    // under devices/.
    if (!client) return done(topic.startsWith(DEVICES_PREFIX) ? new Error('device topics need a connected device') : null)
    const deviceId = client.fgDeviceId
    if (deviceId === undefined) {
      metrics.publishes.inc({ topic_class: classifyTopic(topic), qos: packet.qos })
      if (client.fgAnonymous && anonymousMayPublish(topic)) return done(null)
      return refuse(client, topic, done)
    }
    const dest = parseDevicePublish(deviceId, topic)
    if (dest === undefined) return refuse(client, topic, done)
    if (!withinWindow(client, packet)) return
    if (lim) {
      const now = Date.now()
      let budget = budgets.get(client)
      if (!budget) { budget = createPublishBudget(lim.publishMessagesPerSecond, lim.publishBytesPerSecond, now); budgets.set(client, budget) }
      const wait = budget.take(packet.payload.length, now)
      if (wait > 0) {
        // Persistently over: it has been over budget, or is that far ahead of
        // it (a burst parsed at once), for longer than the threshold.
        if (lim.throttleDisconnectMs > 0 && now - budget.overSince + wait > lim.throttleDisconnectMs) {
          // A v5 client already being disconnected (its DISCONNECT is
          // written, the close follows once it is flushed): the rest of its
          // batch is dropped, so it gets one DISCONNECT only [MQTT-3.14.4-1].
          if (client.fgProtocol === 5 && client.fgReason === 'rate_limited') return
          metrics.aclRefusals.inc({ action: 'rate_limited' })
          log.info({ deviceId, overMs: now - budget.overSince }, 'device over its publish budget for too long; disconnecting')
          client.fgReason = 'rate_limited'
          if (client.fgProtocol === 5) return disconnectWith(client, REASON.QUOTA_EXCEEDED, 'publish budget exceeded')
          return done(new Error('publish rate limit exceeded'))
        }
        // Over budget: hold the message (aedes stops reading the socket
        // meanwhile), then carry on. Backpressure, not disconnection.
        metrics.throttledSeconds.inc(wait / 1000)
        setTimeout(guard.wrap('authorizePublish', client, () => accept(client, deviceId, dest, packet, done)), wait)
        return
      }
    }
    accept(client, deviceId, dest, packet, done)
  }

  // [MQTT-3.3.4-9]'s counterpart for the server: a client with more QoS 1/2
  // PUBLISHes unanswered than the Receive Maximum advertised in CONNACK gets
  // DISCONNECT 0x93 (MQTT 5.0 section 3.3.4). 3.1.1 cannot be told the
  // window, so only its QoS 2 ids awaiting PUBREL are bounded (as aedes 1.2
  // did with maxInflightInbound): past it the connection is closed.
  function withinWindow (client: FleetClient, packet: PublishPacket): boolean {
    if (packet.qos === 0) return true
    const repeat = packet.qos === 2 && packet.messageId !== undefined && exactlyOnce.knows(client, packet.messageId)
    if (repeat) return true
    const v5 = client.fgProtocol === 5
    const qos1 = v5 ? client.fgQos1InFlight ?? 0 : 0
    const inFlight = exactlyOnce.awaiting(client) + qos1
    if (inFlight < deps.receiveMaximum || (!v5 && packet.qos === 1)) {
      // A field on the client rather than a WeakMap: this runs for every
      // v5 QoS 1 message (issue 12's v5/3.1.1 cost).
      if (packet.qos === 1 && v5) client.fgQos1InFlight = qos1 + 1
      return true
    }
    metrics.protocolViolations.inc({ rule: 'receive_maximum_exceeded' })
    client.fgReason = 'receive_maximum_exceeded'
    log.info({ deviceId: client.fgDeviceId, clientId: client.id, inFlight, max: deps.receiveMaximum }, 'more PUBLISHes in flight than Receive Maximum; disconnecting')
    disconnectWith(client, REASON.RECEIVE_MAXIMUM_EXCEEDED, 'receive maximum exceeded')
    return false
  }

  /** A v5 QoS 1 PUBLISH is answered: it leaves the inbound window. */
  function leaveWindow (client: FleetClient, packet: PublishPacket) {
    if (packet.qos === 1 && client.fgProtocol === 5) client.fgQos1InFlight = (client.fgQos1InFlight ?? 1) - 1
  }

  function answered (client: FleetClient, packet: PublishPacket, done: Done): Done {
    if (packet.qos !== 1 || client.fgProtocol !== 5) return done
    return (err) => {
      leaveWindow(client, packet)
      done(err)
    }
  }

  const countDuplicate = () => metrics.duplicatesIgnored.inc()
  function accept (client: FleetClient, deviceId: string, dest: DeviceTopic, packet: PublishPacket, done: Done) {
    // Telemetry leaves the window in store()'s own callback, with no wrapper
    // per message; only QoS 2 needs the exactly-once bookkeeping (and its
    // closures).
    if (packet.qos !== 2) return store(client, deviceId, dest, packet, dest.kind === 'telemetry' ? done : answered(client, packet, done))
    exactlyOnce.run(client, packet, (stored) => store(client, deviceId, dest, packet, stored), done, countDuplicate)
  }

  function store (client: FleetClient, deviceId: string, dest: DeviceTopic, packet: PublishPacket, done: (err?: Error | null, release?: boolean) => void) {
    const kind = dest.kind
    if (kind === 'telemetry') metrics.telemetryReceived(packet.qos, packet.payload.length) // qos is 0–2: protocol-rules.ts closes anything else
    else {
      metrics.publishes.inc({ topic_class: kind, qos: packet.qos })
      metrics.bytesIn.inc(packet.payload.length)
    }
    presence.seen(deviceId)
    const payload = packet.payload as Buffer
    if (kind === 'telemetry') {
      return deps.intake.take(deviceId, payload, packet.qos, client, (err, outcome) => {
        leaveWindow(client, packet)
        if (err) return done(err)
        if (outcome?.deadLetter && client.fgProtocol === 5 && packet.qos > 0) {
          // Stored, as a dead letter: a v5 device learns its reading was not
          // stored as telemetry, and why (the stable reason).
          answerPublish(client, packet, REASON.PAYLOAD_FORMAT_INVALID, outcome.deadLetter)
          return done(null, true)
        }
        done(null)
      })
    }
    const sessions = deps.sessions
    if (!sessions) return done(null)
    // config/reported and command results: recorded in PostgreSQL, and
    // (QoS 1) acknowledged only once recorded, like telemetry.
    const work = kind === 'config_reported'
      ? sessions.configReported(deviceId, payload)
      : sessions.commandResult(deviceId, dest.commandId!, payload)
    work.then(guard.wrap('deviceMessage', client, (r: Awaited<typeof work>) => {
      metrics.deviceMessages.inc({ kind, outcome: r.outcome })
      if (r.outcome !== 'recorded') deps.sampled(`${kind}:${r.outcome}`, { deviceId, topic: packet.topic, outcome: r.outcome }, 'device message not recorded')
      else if (kind === 'command_result') {
        metrics.commands.inc({ status: r.status ?? 'completed' })
        // The REST request that created the command, for following it end to end.
        log.info({ deviceId, commandId: dest.commandId, status: r.status, correlationId: r.correlationId }, 'command result recorded')
      } else if (r.syncLagSeconds !== undefined) metrics.configSyncLag.observe(r.syncLagSeconds)
      done(null)
    }), guard.wrap('deviceMessage', client, (err: Error) => {
      metrics.deviceMessages.inc({ kind, outcome: 'error' })
      log.warn({ deviceId, topic: packet.topic, err: { message: err.message } }, 'device message could not be recorded; no PUBACK')
      done(err)
    }))
  }

  // 3.1.1: the connection is closed ([MQTT-3.3.5-2]). 5: aedes answers the
  // PUBLISH with 0x87 and the error's message as reason string, and the
  // connection stays open.
  function refuse (client: FleetClient, topic: string, done: Done) {
    metrics.aclRefusals.inc({ action: 'publish' })
    const v5 = client.fgProtocol === 5
    deps.sampled('publish_refused', { deviceId: client.fgDeviceId, clientId: client.id, topic }, v5 ? 'publish refused (0x87)' : 'publish refused; closing connection [MQTT-3.3.5-2]')
    const err = new Error('publish not authorized')
    if (v5) expectedErrors.add(err)
    else client.fgReason = 'acl'
    done(err)
  }

  /** Errors aedes reports on 'clientError' after answering them itself (v5 0x87): the connection stays. */
  const expectedErrors = new WeakSet<Error>()

  return { authorizePublish, isAnswered: (err: Error) => expectedErrors.has(err) }
}

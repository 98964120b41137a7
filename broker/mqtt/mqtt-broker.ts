// The aedes instance, its hooks and the TCP listener (issue 2).
//
// The hooks are where the two rules of DESIGN.md live: telemetry is enqueued
// in authorizePublish and its callback — after which aedes writes PUBACK — is
// held until the batch holding it has committed (ack after commit); while the
// queue is full the callback is not called, aedes reads nothing more from that
// socket and TCP pushes back on the device (backpressure, not buffering).
import { createServer, type Server, type Socket } from 'node:net'
import { createServer as createTlsServer, type TLSSocket } from 'node:tls'
import type { Server as HttpServer, IncomingMessage } from 'node:http'
import type { Duplex } from 'node:stream'
import { WebSocketServer, createWebSocketStream } from 'ws'
import { once } from 'node:events'
import { enforceProtocolRules, limitPacketSize, PacketTooLargeError } from './packet-size-limit.js'
import { ProtocolViolationError } from './protocol-rules.js'
import { createHookGuard, type HookName } from './hook-guard.js'
import { createLogSampler } from './log-sampler.js'
import { withTimeout } from '../with-timeout.js'
import { holdUntilReady, markReplayed, releaseHeld } from './connack-first.js'
import memoryPersistence from 'aedes-persistence'
import { Aedes, type Client, type AuthenticateError, type PublishPacket, type Subscription } from 'aedes'
import type { IngestQueue } from '../ingest/ingest-queue.js'
import type { Logger } from '../logger.js'
import type { Metrics } from '../metrics.js'
import type { PresenceTracker } from '../fleet/presence-tracker.js'
import type { IngestRow } from '../ingest/telemetry-sink.js'
import { cleanText } from '../ingest/telemetry-sink.js'
import { decodeTelemetry } from '../ingest/telemetry-decoder.js'
import {
  anonymousMayPublish, anonymousMayReceive, anonymousMaySubscribe,
  deviceMayReceive, deviceMaySubscribe, devicePublishClass, classifyTopic, type TopicClass
} from './topic-acl.js'
import { isValidDeviceId } from '../../devices/device-id.js'
import { createAuthFailures, createConnectGate, createPublishBudget, type PublishBudget } from './connection-limits.js'
import { verifySecret, hashSecret } from '../../devices/device-secret.js'
import type { CredentialCache } from '../../devices/credential-cache.js'
import type { DeviceSessions } from '../../devices/device-sessions.js'

/** What fleetgate attaches to an aedes client. */
interface FleetClient extends Client {
  fgDeviceId?: string
  fgAnonymous?: boolean
  fgEmptyIdPersistent?: boolean
  fgTakenOver?: boolean
  fgReason?: string
  fgRemote?: string
  /** The listener it came in on. */
  fgListener?: 'tcp' | 'tls' | 'ws'
  /** Names in a verified client certificate (CN and SANs). */
  fgCertNames?: string[]
}

export interface TlsListenerOptions {
  port: number
  key: Buffer
  cert: Buffer
  ca?: Buffer
  clientCert: 'off' | 'optional' | 'required'
  /** false: a verified client certificate alone identifies the device. */
  passwordAuth: boolean
}

/** CN and subject alternative names (DNS, URI) of a verified peer certificate. */
function certificateNames (socket: TLSSocket): string[] | undefined {
  if (!socket.authorized) return undefined
  const cert = socket.getPeerCertificate()
  if (!cert || Object.keys(cert).length === 0) return undefined
  const names: string[] = []
  const cn = cert.subject?.CN
  if (typeof cn === 'string') names.push(cn)
  else if (Array.isArray(cn)) names.push(...cn)
  for (const part of (cert.subjectaltname ?? '').split(',')) {
    const m = /^\s*(DNS|URI):(.+)$/.exec(part)
    if (m) names.push(m[2]!.trim())
  }
  return names
}

export interface MqttBrokerOptions {
  host: string
  port: number
  /** Plain TCP listener (default on). */
  tcp?: boolean
  tls?: TlsListenerOptions
  listenBacklog?: number
  brokerId: string
  allowAnonymous: boolean
  connectTimeoutMs: number
  telemetryMaxBytes: number
  telemetryMaxReadings: number
  telemetryMaxDepth: number
  telemetryRetentionDays: number
  telemetryMaxFutureMs: number
  credentials: CredentialCache
  queue: IngestQueue<IngestRow>
  presence: PresenceTracker
  limits?: {
    maxConnections: number
    connectRatePerSecond: number
    connectQueue: number
    authFailureMaxDelayMs: number
    publishMessagesPerSecond: number
    publishBytesPerSecond: number
    throttleDisconnectMs: number
    drainTimeoutMs: number
  }
  /** The control plane's side of device sessions (config, commands). */
  sessions?: DeviceSessions
  /** Largest MQTT packet accepted (remaining length); larger closes the connection unread. */
  maxPacketBytes?: number
  /** Cluster mode: shared routing and session store (cluster-backend.ts); default in memory. */
  mq?: unknown
  persistence?: unknown
  metrics: Metrics
  log: Logger
}

export interface MqttBroker {
  readonly aedes: Aedes
  /** TCP port (0 when the TCP listener is off). */
  readonly port: number
  readonly tlsPort?: number
  /** Serves MQTT over WebSocket on `path` of an HTTP server (same authentication and ACL). */
  attachWebSocket (server: HttpServer, path: string): void
  /** Ids of the devices connected to this process now. */
  connectedDeviceIds (): string[]
  /**
   * Gives every connected device what is waiting for it in PostgreSQL (its
   * desired config, its queued commands), as when it subscribes: after
   * deliveries could not be made (Redis was away). Each connection is handed
   * a version or command only once, so what it has is not sent again.
   */
  redeliverAll (): void
  /** True while the listener accepts connections. */
  readonly listening: boolean
  /** Stops accepting new TCP connections; existing clients stay. */
  stopAccepting (): Promise<void>
  /** Disconnects every client and closes aedes. */
  close (): Promise<void>
}

// CONNACK return codes, MQTT 3.1.1 section 3.2.2.3.
// aedes keeps connected clients by id; its type definitions do not declare it.
function clientsOf (aedes: Aedes): Record<string, FleetClient> {
  return (aedes as unknown as { clients: Record<string, FleetClient> }).clients
}

const CONNACK = { IDENTIFIER_REJECTED: 2, SERVER_UNAVAILABLE: 3, BAD_CREDENTIALS: 4, NOT_AUTHORIZED: 5 } as const

function refusal (code: 2 | 3 | 4 | 5, message: string): AuthenticateError {
  const err = new Error(message) as AuthenticateError
  err.returnCode = code
  return err
}

// A hash of a random secret, checked when the device is unknown so that an
// unknown id costs the same HMAC as a wrong secret (no timing oracle on ids).
const DUMMY_HASH = hashSecret('fleetgate-dummy-secret')

// Dead letters keep the raw bytes, but an oversized payload is kept only up to
// this many bytes (its full size is in `detail`).
const DEAD_LETTER_MAX_BYTES = 64 * 1024

/** The part of aedes' persistence interface used here (incoming QoS 2 packets awaiting PUBREL). */
interface SessionStore {
  incomingGetPacket (client: object, packet: { messageId?: number }): Promise<unknown>
  incomingDelPacket (client: object, packet: { messageId?: number }): Promise<void>
}

// aedes-persistence is CommonJS whose module.exports is the factory; its type
// definitions declare it as a default export.
const createMemoryPersistence = memoryPersistence as unknown as () => unknown

export async function startMqttBroker (opts: MqttBrokerOptions): Promise<MqttBroker> {
  const { metrics, log, queue, presence } = opts
  const DAY_MS = 86_400_000
  // The accepted ts window moves with the clock; recomputed once a second.
  const limits = { maxBytes: opts.telemetryMaxBytes, maxReadings: opts.telemetryMaxReadings, maxDepth: opts.telemetryMaxDepth, minTs: 0, maxTs: 0 }
  const updateWindow = () => {
    const now = Date.now()
    limits.minTs = Math.floor(now / DAY_MS) * DAY_MS - opts.telemetryRetentionDays * DAY_MS
    limits.maxTs = now + opts.telemetryMaxFutureMs
  }
  updateWindow()
  const windowTimer = setInterval(updateWindow, 1000)
  windowTimer.unref()
  // Hot path: resolve labelled counters once, not per message.
  const telemetryPublishes = [0, 1, 2].map((qos) => metrics.publishes.labels('telemetry', String(qos)))
  const ackLatency = metrics.pubackLatency
  const connectionGone = new Error('connection closed while waiting for room in the ingest queue')
  const guard = createHookGuard({ log, onError: (hook) => metrics.hookErrors.inc({ hook }) })
  // What devices can cause per message or per connection attempt is counted
  // in full and logged as a sample (log-sampler.ts), with the count left out.
  const sampler = createLogSampler()
  const sampled = (key: string, fields: Record<string, unknown>, msg: string) => {
    const skipped = sampler.take(key)
    if (skipped !== undefined) log.info(skipped > 0 ? { ...fields, skipped } : fields, msg)
  }

  const lim = opts.limits
  const gate = lim ? createConnectGate({ ratePerSecond: lim.connectRatePerSecond, burst: lim.connectRatePerSecond, maxQueued: lim.connectQueue }) : undefined
  const authFailures = createAuthFailures({ baseDelayMs: 100, maxDelayMs: lim?.authFailureMaxDelayMs ?? 0, forgetAfterMs: 600_000, maxTracked: 100_000 })
  const budgets = new WeakMap<FleetClient, PublishBudget>()

  // The session store (Redis in cluster mode, else aedes' in-memory one),
  // its queue replay recorded for connack-first.ts, its PUBRELs for exactlyOnce().
  const sessionStore = markReplayed((opts.persistence ?? createMemoryPersistence()) as never) as unknown as SessionStore
  const deleteIncoming = sessionStore.incomingDelPacket.bind(sessionStore)
  sessionStore.incomingDelPacket = (client, packet) => {
    qos2Ids.get(client)?.delete(packet.messageId!)
    return deleteIncoming(client, packet)
  }
  const aedes = await Aedes.createBroker({
    id: opts.brokerId,
    ...(opts.mq ? { mq: opts.mq as never } : {}),
    persistence: sessionStore as never,
    connectTimeout: opts.connectTimeoutMs,
    // A client that does not read its socket is disconnected after this,
    // instead of queueing deliveries for it without bound.
    ...(lim ? { drainTimeout: lim.drainTimeoutMs } : {}),
    // MQTT 3.1 (protocol level 3) caps ids at 23 bytes; device ids may be 128.
    maxClientsIdLength: 128,

    preConnect (client: FleetClient, packet, done) {
      guard.run('preConnect', client, () => {
      // [MQTT-3.1.3-8]: a zero-length client id with CleanSession=0 gets
      // CONNACK 2. aedes would assign an id; remember it for authenticate().
        if (packet.clientId === '' && packet.clean === false) client.fgEmptyIdPersistent = true
        const req = (client as unknown as { req?: IncomingMessage }).req
        client.fgListener = req ? 'ws' : (client.conn as TLSSocket).encrypted ? 'tls' : 'tcp'
        client.fgRemote = req?.socket.remoteAddress ?? (client.conn as Socket).remoteAddress
        if (client.fgListener === 'tls') client.fgCertNames = certificateNames(client.conn as TLSSocket)
        if (!gate) return done(null, true)
        // The connection rate limit: a reconnect storm waits here, in order.
        gate.acquire(guard.wrap('preConnect', client, (admitted: boolean) => {
          if (admitted) return done(null, true)
          metrics.connackRefusals.inc({ code: 'none', reason: 'connect_queue_full' })
          sampled('connect_queue_full', { remote: client.fgRemote }, 'connection refused: connect queue full')
          done(new Error('connect queue full'), false)
        }))
      })
    },

    authenticate (client: FleetClient, username, password, done) {
      authenticate(client, username, password).then(
        guard.wrap('authenticate', client, () => { authFailures.succeeded(client.fgRemote); done(null, true) }),
        guard.wrap('authenticate', client, (err: AuthenticateError) => {
          const code = err.returnCode ?? CONNACK.SERVER_UNAVAILABLE
          // A stable snake_case label from our own refusals; anything else
          // (an unexpected error) is not spelled into a label.
          const reason = err.returnCode === undefined ? 'internal_error' : err.message.replace(/[^A-Za-z0-9]+/g, '_').toLowerCase()
          metrics.connackRefusals.inc({ code: String(code), reason })
          sampled(`connack:${reason}`, { clientId: client.id, remote: client.fgRemote, code, reason: err.message }, 'connection refused')
          // Guessing is slowed down: each failure from an address doubles the
          // wait before its next refusal is sent.
          const delay = authFailures.delayFor(client.fgRemote)
          if (code === CONNACK.BAD_CREDENTIALS || code === CONNACK.NOT_AUTHORIZED) authFailures.failed(client.fgRemote)
          if (delay > 0) setTimeout(guard.wrap('authenticate', client, () => done(err, false)), delay)
          else done(err, false)
        }))
    },

    authorizePublish (client: FleetClient | null, packet: PublishPacket, done: (err?: Error | null) => void) {
      guard.run('authorizePublish', client, () => authorizePublish(client, packet, done))
    },

    authorizeSubscribe (client: FleetClient, sub: Subscription, done) {
      guard.run('authorizeSubscribe', client, () => {
        const ok = client.fgDeviceId !== undefined
          ? deviceMaySubscribe(client.fgDeviceId, sub.topic)
          : client.fgAnonymous === true && anonymousMaySubscribe(sub.topic)
        if (ok) return done(null, sub)
        metrics.aclRefusals.inc({ action: 'subscribe' })
        sampled('subscribe_refused', { deviceId: client.fgDeviceId, clientId: client.id, filter: sub.topic }, 'subscription refused (0x80)')
        done(null, null) // SUBACK return code 0x80 for this filter
      })
    },

    authorizeForward (client: FleetClient, packet) {
      // On an error the message is not forwarded to this client (whose
      // connection is closed); other subscribers are unaffected.
      return guard.run('authorizeForward', client, () => {
        const ok = client.fgDeviceId !== undefined ? deviceMayReceive(client.fgDeviceId, packet.topic) : anonymousMayReceive(packet.topic)
        return ok ? packet : null
      }, null)
    }
  })

  function authorizePublish (client: FleetClient | null, packet: PublishPacket, done: (err?: Error | null) => void) {
    const topic = packet.topic
    // No client: a will replayed by aedes for a connection that is gone (or
    // another broker's). Nothing without an authenticated device may write
    // under devices/.
    if (!client) return done(topic.startsWith('devices/') ? new Error('device topics need a connected device') : null)
    const deviceId = client.fgDeviceId
    if (deviceId === undefined) {
      metrics.publishes.inc({ topic_class: classifyTopic(topic), qos: packet.qos })
      if (client.fgAnonymous && anonymousMayPublish(topic)) return done(null)
      return refusePublish(client, topic, done)
    }
    const cls = devicePublishClass(deviceId, topic)
    if (cls === undefined) return refusePublish(client, topic, done)
    if (lim) {
      const now = Date.now()
      let budget = budgets.get(client)
      if (!budget) { budget = createPublishBudget(lim.publishMessagesPerSecond, lim.publishBytesPerSecond, now); budgets.set(client, budget) }
      const wait = budget.take(packet.payload.length, now)
      if (wait > 0) {
        // Persistently over: it has been over budget, or is that far ahead of
        // it (a burst parsed at once), for longer than the threshold.
        if (lim.throttleDisconnectMs > 0 && now - budget.overSince + wait > lim.throttleDisconnectMs) {
          metrics.aclRefusals.inc({ action: 'rate_limited' })
          log.info({ deviceId, overMs: now - budget.overSince }, 'device over its publish budget for too long; disconnecting')
          client.fgReason = 'rate_limited'
          return done(new Error('publish rate limit exceeded'))
        }
        // Over budget: hold the message (aedes stops reading the socket
        // meanwhile), then carry on. Backpressure, not disconnection.
        metrics.throttledSeconds.inc(wait / 1000)
        setTimeout(guard.wrap('authorizePublish', client, () => exactlyOnce(client, deviceId, cls, packet, done)), wait)
        return
      }
    }
    exactlyOnce(client, deviceId, cls, packet, done)
  }

  // QoS 2 is exactly once [MQTT-4.3.3]: a PUBLISH re-sent with DUP while its
  // packet id still awaits PUBREL must get PUBREC again but not be stored
  // again. aedes makes that check only after authorizePublish, where the
  // message has already been stored, so it is made here, per connection: a
  // repeat of a packet id whose first copy is still being stored waits for
  // that outcome; a repeat of one that was stored is answered at once
  // (aedes then writes PUBREC). An id is forgotten on PUBREL (the session
  // store's incomingDelPacket) or with the connection. A persistent session
  // resumed on a new connection finds its stored ids in the session store.
  // Bounded: aedes closes a connection with more than maxInflightInbound
  // (1000) ids awaiting PUBREL.
  type Qos2State = Array<(err?: Error | null) => void> | 'stored'
  const qos2Ids = new WeakMap<object, Map<number, Qos2State>>()
  function exactlyOnce (client: FleetClient, deviceId: string, cls: TopicClass, packet: PublishPacket, done: (err?: Error | null) => void) {
    // A will (no packet id) is published once, when its connection ends.
    if (packet.qos !== 2 || packet.messageId === undefined) return continuePublish(client, deviceId, cls, packet, done)
    const id = packet.messageId!
    let ids = qos2Ids.get(client)
    const state = ids?.get(id)
    if (state !== undefined) {
      metrics.duplicatesIgnored.inc()
      if (state === 'stored') return done(null)
      state.push(done)
      return
    }
    if (!ids) { ids = new Map(); qos2Ids.set(client, ids) }
    const waiters: Array<(err?: Error | null) => void> = [done]
    ids.set(id, waiters)
    const finish = guard.wrap('authorizePublish', client, (err?: Error | null) => {
      if (err) ids!.delete(id)
      else ids!.set(id, 'stored')
      for (const w of waiters) w(err)
    })
    sessionStore.incomingGetPacket(client, { messageId: id }).then(
      guard.wrap('authorizePublish', client, () => {
        // Stored by an earlier connection of this session, still awaiting PUBREL.
        metrics.duplicatesIgnored.inc()
        finish(null)
      }),
      guard.wrap('authorizePublish', client, () => continuePublish(client, deviceId, cls, packet, finish)))
  }

  function continuePublish (client: FleetClient, deviceId: string, cls: TopicClass, packet: PublishPacket, done: (err?: Error | null) => void) {
    const topic = packet.topic
    if (cls === 'telemetry') telemetryPublishes[packet.qos]!.inc() // qos is 0–2: protocol-rules.ts closes anything else
    else metrics.publishes.inc({ topic_class: cls, qos: packet.qos })
    metrics.bytesIn.inc(packet.payload.length)
    presence.seen(deviceId)
    if (cls === 'telemetry') return ingest(client, deviceId, packet, done)
    if (!opts.sessions) return done(null)
    // config/reported and command results: recorded in PostgreSQL, and
    // (QoS 1) acknowledged only once recorded, like telemetry.
    const payload = packet.payload as Buffer
    const work = cls === 'config_reported'
      ? opts.sessions.configReported(deviceId, payload)
      : opts.sessions.commandResult(deviceId, topic.split('/')[3]!, payload)
    work.then(guard.wrap('deviceMessage', client, (r: Awaited<typeof work>) => {
      metrics.deviceMessages.inc({ kind: cls, outcome: r.outcome })
      if (r.outcome !== 'recorded') sampled(`${cls}:${r.outcome}`, { deviceId, topic, outcome: r.outcome }, 'device message not recorded')
      else if (cls === 'command_result') {
        metrics.commands.inc({ status: r.status ?? 'completed' })
        // The REST request that created the command, for following it end to end.
        log.info({ deviceId, commandId: topic.split('/')[3], status: r.status, correlationId: r.correlationId }, 'command result recorded')
      } else if (r.syncLagSeconds !== undefined) metrics.configSyncLag.observe(r.syncLagSeconds)
      done(null)
    }), guard.wrap('deviceMessage', client, (err: Error) => {
      metrics.deviceMessages.inc({ kind: cls, outcome: 'error' })
      log.warn({ deviceId, topic, err: { message: err.message } }, 'device message could not be recorded; no PUBACK')
      done(err)
    }))
  }

  async function authenticate (client: FleetClient, username: string | undefined, password: Buffer | undefined): Promise<void> {
    if (client.fgEmptyIdPersistent) throw refusal(CONNACK.IDENTIFIER_REJECTED, 'empty client id requires a clean session')
    // A verified client certificate must name this client id, whatever else is sent.
    if (client.fgCertNames && !client.fgCertNames.includes(client.id)) throw refusal(CONNACK.NOT_AUTHORIZED, 'client certificate does not name this client id')
    if (client.fgListener === 'tls' && opts.tls && !opts.tls.passwordAuth) {
      // Mutual TLS: the certificate is the credential (verified by the TLS layer against the CA).
      if (!client.fgCertNames) throw refusal(CONNACK.NOT_AUTHORIZED, 'client certificate required')
      if (username !== undefined && username !== client.id) throw refusal(CONNACK.IDENTIFIER_REJECTED, 'client id must equal username')
      if (!isValidDeviceId(client.id)) throw refusal(CONNACK.IDENTIFIER_REJECTED, 'malformed client id')
      let device
      try { device = await opts.credentials.get(client.id) } catch { throw refusal(CONNACK.SERVER_UNAVAILABLE, 'credential store unavailable') }
      if (!device) throw refusal(CONNACK.NOT_AUTHORIZED, 'unknown device')
      if (device.disabled) throw refusal(CONNACK.NOT_AUTHORIZED, 'device disabled')
      markTakeover(client)
      client.fgDeviceId = client.id
      return
    }
    if (username === undefined && password === undefined) {
      if (!opts.allowAnonymous) throw refusal(CONNACK.NOT_AUTHORIZED, 'credentials required')
      // An anonymous client must not take over a device's session by using its id.
      if (isValidDeviceId(client.id) && await opts.credentials.get(client.id)) {
        throw refusal(CONNACK.IDENTIFIER_REJECTED, 'client id belongs to a device')
      }
      client.fgAnonymous = true
      return
    }
    if (username !== client.id) throw refusal(CONNACK.IDENTIFIER_REJECTED, 'client id must equal username')
    if (!isValidDeviceId(client.id)) throw refusal(CONNACK.IDENTIFIER_REJECTED, 'malformed client id')
    if (!password || password.length === 0) throw refusal(CONNACK.BAD_CREDENTIALS, 'password required')
    let creds
    try {
      creds = await opts.credentials.get(client.id)
    } catch (err) {
      log.warn({ err: { message: (err as Error).message }, deviceId: client.id }, 'credential look-up failed')
      throw refusal(CONNACK.SERVER_UNAVAILABLE, 'credential store unavailable')
    }
    const ok = verifySecret(password, creds?.secretHash ?? DUMMY_HASH)
    if (!creds || !ok) throw refusal(CONNACK.BAD_CREDENTIALS, creds ? 'bad secret' : 'unknown device')
    if (creds.disabled) throw refusal(CONNACK.NOT_AUTHORIZED, 'device disabled')
    markTakeover(client)
    client.fgDeviceId = client.id
  }

  // [MQTT-3.1.4-2] take-over: aedes closes the previous connection of this
  // id; mark it so its disconnect does not flip the device offline.
  function markTakeover (client: FleetClient) {
    const previous = clientsOf(aedes)[client.id]
    if (previous && previous !== client) {
      previous.fgTakenOver = true
      previous.fgReason = 'taken_over'
    }
  }

  function refusePublish (client: FleetClient, topic: string, done: (err?: Error | null) => void) {
    metrics.aclRefusals.inc({ action: 'publish' })
    log.info({ deviceId: client.fgDeviceId, clientId: client.id, topic }, 'publish refused; closing connection [MQTT-3.3.5-2]')
    client.fgReason = 'acl'
    done(new Error('publish not authorized'))
  }

  function ingest (client: FleetClient, deviceId: string, packet: PublishPacket, done: (err?: Error | null) => void) {
    const receivedAt = Date.now()
    const decoded = decodeTelemetry(packet.payload as Buffer, receivedAt, limits)
    let rows: IngestRow[]
    if (decoded.ok) {
      const readings = decoded.readings
      rows = new Array(readings.length)
      for (let i = 0; i < readings.length; i++) {
        const r = readings[i]!
        rows[i] = { kind: 'reading', deviceId, ts: r.ts, hash: r.hash, receivedAt, json: r.json }
      }
      metrics.readingsAccepted.inc(rows.length)
    } else {
      metrics.deadLetters.inc({ reason: decoded.reason })
      sampled(`dead_letter:${decoded.reason}`, { deviceId, reason: decoded.reason, detail: decoded.detail }, 'telemetry dead-lettered')
      const payload = packet.payload as Buffer
      rows = [{
        kind: 'dead',
        deviceId,
        topic: packet.topic,
        // A copy, so an oversized packet's whole buffer is not kept alive by the slice.
        payload: payload.length > DEAD_LETTER_MAX_BYTES ? Buffer.from(payload.subarray(0, DEAD_LETTER_MAX_BYTES)) : payload,
        reason: decoded.reason,
        detail: cleanText(decoded.detail),
        receivedAt
      }]
    }
    const qos0 = packet.qos === 0
    let admitted = false
    const accepted = queue.push({
      rows,
      bytes: packet.payload.length,
      owner: client,
      enqueuedAt: 0,
      // Called by the batch writer: an exception here must not stop it
      // acknowledging the batch's other entries.
      done: guard.wrap('ingest', client, (err?: Error) => {
        if (err) {
          // Not stored: no PUBACK; the connection closes and the device
          // retransmits (QoS 1) after reconnecting. A QoS 0 message refused
          // before admission must still release aedes' hook.
          metrics.refused.inc({ reason: err === connectionGone ? 'connection_closed' : 'pipeline_aborted' })
          if (!qos0 || !admitted) done(err)
          return
        }
        ackLatency.observe((Date.now() - receivedAt) / 1000)
        if (!qos0) done(null)
      })
    }, qos0 ? guard.wrap('ingest', client, () => { admitted = true; done(null) }) : undefined)
    if (!accepted) {
      metrics.refused.inc({ reason: 'draining' })
      done(new Error('server is shutting down'))
    }
  }

  // What devices publish (telemetry, reported config, command results) is
  // stored, never delivered: authorizeForward refuses it to every subscriber.
  // Routing it through aedes (retained store, offline queues, mqemitter)
  // would only cost CPU, so once such a message has passed authorizePublish
  // (and PUBACK is written) its publish step ends here.
  // (aedes' typings declare publish(packet, cb); at run time it is publish(packet, client?, cb).)
  type RuntimePublish = (packet: PublishPacket, client: FleetClient | null | ((err?: Error) => void), done?: (err?: Error) => void) => void
  const internal = aedes as unknown as { publish: RuntimePublish }
  const routePublish = internal.publish.bind(aedes)
  internal.publish = function publish (packet, client, done) {
    if (client && typeof client !== 'function' && client.fgDeviceId !== undefined &&
        devicePublishClass(client.fgDeviceId, packet.topic) !== undefined) {
      done?.()
      return
    }
    routePublish(packet, client, done)
  }

  // Every event handler runs through the hook guard (hook-guard.ts).
  const on = <A extends unknown[]>(event: string, hook: HookName, fn: (client: FleetClient, ...rest: A) => void) => {
    (aedes as unknown as NodeJS.EventEmitter).on(event, (...args: unknown[]) => {
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
    const reason = client.fgReason ?? ((client as unknown as { _disconnected: boolean })._disconnected ? 'clean' : 'connection_lost')
    metrics.disconnects.inc({ reason })
    metrics.connectedClients.set(aedes.connectedClients)
    if (client.fgDeviceId && !client.fgTakenOver) presence.disconnected(client.fgDeviceId)
    // Its publishes still waiting for room will never be acknowledged: drop
    // them now (the device retransmits), so waiters stay bounded by live connections.
    queue.cancel(client, connectionGone)
    log.debug({ clientId: client.id, reason }, 'client disconnected')
  })
  // A device that subscribes gets what is waiting for it from PostgreSQL: its
  // desired config and its queued commands. A persistent session restores
  // subscriptions without SUBSCRIBE, so clientReady is watched as well.
  // One delivery at a time per connection: SUBSCRIBEs arriving meanwhile
  // are folded into one follow-up, so a client cannot flood the database.
  const delivering = new WeakMap<FleetClient, Set<string> | null>()
  const deliverWaiting = (client: FleetClient, filters: string[]) => {
    const sessions = opts.sessions
    if (!sessions || client.fgDeviceId === undefined || filters.length === 0) return
    if (delivering.has(client)) {
      const next = delivering.get(client) ?? new Set<string>()
      for (const f of filters) next.add(f)
      delivering.set(client, next)
      return
    }
    delivering.set(client, null)
    sessions.subscribed(client.fgDeviceId, filters).catch((err: Error) => {
      log.warn({ deviceId: client.fgDeviceId, err: { message: err.message } }, 'could not deliver config and commands on subscribe')
    }).finally(() => {
      const next = delivering.get(client)
      delivering.delete(client)
      if (next && !client.closed) deliverWaiting(client, [...next])
    })
  }
  on('subscribe', 'subscribe', (client, subs: Subscription[]) => deliverWaiting(client, subs.map((s) => s.topic)))
  on('clientReady', 'clientReady', (client) => releaseHeld(client))
  on('clientReady', 'clientReady', (client) => deliverWaiting(client, Object.keys((client as unknown as { subscriptions: object }).subscriptions)))
  on('keepaliveTimeout', 'keepaliveTimeout', (client) => { client.fgReason = 'keepalive_timeout' })
  on('clientError', 'clientError', (client, err: Error) => {
    // aedes destroys a connection whose socket stayed full MQTT_DRAIN_TIMEOUT_MS.
    if (err.message === 'drain timeout' && client.fgReason === undefined) {
      client.fgReason = 'slow_consumer'
      log.info({ clientId: client.id, remote: client.fgRemote }, 'client did not read its socket in time; disconnected (slow consumer)')
    }
    client.fgReason ??= 'error'
    log.debug({ clientId: client.id, err: err.message }, 'client error')
  })
  // aedes reports internal failures here (e.g. replaying wills); without a
  // listener an 'error' event would crash the process.
  ;(aedes as unknown as NodeJS.EventEmitter).on('error', (err: Error) => log.error({ err }, 'aedes error'))
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

  const servers: Server[] = []
  // A deep accept queue: with Node's default (511) a reconnect storm
  // overflows it and the kernel drops SYNs, turning into seconds of
  // retransmission delay per device.
  const listen = async (server: Server, port: number, name: string) => {
    if (lim) {
      // Beyond this, new connections are closed at once (the kernel's
      // accept never turns into an MQTT client).
      server.maxConnections = lim.maxConnections
      server.on('drop', () => metrics.connackRefusals.inc({ code: 'none', reason: 'max_connections' }))
    }
    server.listen({ port, host: opts.host, backlog: opts.listenBacklog ?? 4096 })
    await once(server, 'listening')
    servers.push(server)
    const address = server.address()
    const actual = typeof address === 'object' && address ? address.port : port
    log.info({ host: opts.host, port: actual, listener: name }, 'MQTT listener ready')
    return actual
  }
  const maxPacketBytes = opts.maxPacketBytes ?? 268_435_455
  const handle = (conn: Duplex, req?: IncomingMessage) => {
    const client = (aedes.handle as (c: Duplex, r?: IncomingMessage) => FleetClient)(conn, req)
    // CONNACK, then the stored session, then live messages (connack-first.ts).
    holdUntilReady(client)
    conn.once('close', () => guard.run('connection', client, () => releaseHeld(client, false)))
    try {
      limitPacketSize(client, maxPacketBytes, onOversized)
      enforceProtocolRules(client, onViolation)
    } catch (err) {
      // An aedes without the parser this relies on: refuse service rather
      // than run without the limit (or crash on every connection).
      log.error({ err }, 'packet size limit unavailable; connection closed')
      conn.destroy()
    }
    return client
    function onViolation (err: ProtocolViolationError) {
      client.fgReason = 'protocol_violation'
      metrics.protocolViolations.inc({ rule: err.rule })
      sampled(`protocol_violation:${err.rule}`, { deviceId: client.fgDeviceId, clientId: client.id, remote: client.fgRemote ?? (conn as Socket).remoteAddress, rule: err.rule, err: err.message }, 'protocol violation; connection closed')
    }
    function onOversized (cmd: string | undefined, bytes: number) {
      client.fgReason = 'packet_too_large'
      metrics.oversizedPackets.inc()
      sampled('packet_too_large', { clientId: client.id, remote: client.fgRemote ?? (conn as Socket).remoteAddress, cmd, bytes, max: maxPacketBytes }, 'packet too large; connection closed')
    }
  }
  const port = opts.tcp === false ? 0 : await listen(createServer(handle), opts.port, 'tcp')
  let tlsPort: number | undefined
  if (opts.tls) {
    const t = opts.tls
    const tlsServer = createTlsServer({
      key: t.key,
      cert: t.cert,
      ...(t.ca ? { ca: t.ca } : {}),
      minVersion: 'TLSv1.2',
      requestCert: t.clientCert !== 'off',
      // 'required': the handshake fails without a certificate the CA signed.
      rejectUnauthorized: t.clientCert === 'required'
    }, handle)
    tlsServer.on('tlsClientError', (err) => {
      metrics.connackRefusals.inc({ code: 'tls', reason: 'tls_handshake_failed' })
      log.info({ err: err.message }, 'TLS handshake refused')
    })
    tlsPort = await listen(tlsServer as unknown as Server, t.port, 'tls')
  }
  let listening = true
  let wss: WebSocketServer | undefined

  function stopAccepting (): Promise<void> {
    if (listening) {
      listening = false
      // server.close() stops accepting at once; its callback fires only when
      // every connection has ended, which close() below takes care of.
      for (const s of servers) s.close(() => {})
      wss?.close()
    }
    return Promise.resolve()
  }

  const connectedDevices = () => Object.values(clientsOf(aedes)).filter((c) => c.fgDeviceId !== undefined && c.connected)

  let closeP: Promise<void> | undefined
  return {
    aedes,
    port,
    tlsPort,
    attachWebSocket (server, path) {
      // A frame may carry several packets, each bounded on its own above;
      // this only bounds what one frame can make the server buffer.
      wss = new WebSocketServer({ noServer: true, maxPayload: Math.max(2 * maxPacketBytes, 1024 * 1024) })
      const ws = wss
      server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
        if (!listening || (req.url ?? '').split('?')[0] !== path) { socket.destroy(); return }
        ws.handleUpgrade(req, socket, head, (client) => {
          const stream = createWebSocketStream(client)
          stream.on('error', () => stream.destroy())
          handle(stream, req)
        })
      })
      log.info({ path }, 'MQTT over WebSocket ready')
    },
    connectedDeviceIds () {
      return connectedDevices().map((c) => c.fgDeviceId!)
    },
    redeliverAll () {
      for (const c of connectedDevices()) deliverWaiting(c, Object.keys((c as unknown as { subscriptions: object }).subscriptions))
    },
    get listening () { return listening },
    stopAccepting,
    close () {
      closeP ??= (async () => {
        await stopAccepting()
        clearInterval(windowTimer)
        gate?.close()
        for (const c of Object.values(clientsOf(aedes))) c.fgReason ??= 'server_shutdown'
        // aedes closes every client, then its mqemitter; with Redis gone the
        // latter never calls back, so it is not waited for beyond 5 s (the
        // cluster backend then drops its connections).
        await withTimeout(new Promise<void>((resolve) => aedes.close(() => resolve())), 5000)
        metrics.connectedClients.set(0)
      })()
      return closeP
    }
  }
}

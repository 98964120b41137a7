// The MQTT side (issue 2, rebuilt in issue 12 as one small unit per hook):
// this file only composes them over one aedes instance.
//
// | concern                                   | file                     |
// |-------------------------------------------|--------------------------|
// | listeners: TCP, TLS, WebSocket            | listeners.ts             |
// | one new connection (limits at the parser, CONNACK first) | connection.ts |
// | preConnect, authenticate                  | authenticate.ts          |
// | authorizePublish (ACL, window, budget, hand-over) | authorize-publish.ts |
// | QoS 2 exactly once                        | qos2-exactly-once.ts     |
// | authorizeSubscribe, authorizeForward      | authorize-subscribe.ts   |
// | events: presence, metrics, disconnect reasons | client-events.ts     |
// | config and commands on subscribe          | session-delivery.ts      |
// | the client's limits on what it receives   | outbound-limits.ts (+ patches/) |
// | 3.1.1 session expiry, cluster resumes     | session-expiry.ts        |
// | Server Keep Alive (v5)                    | server-keep-alive.ts     |
// | will PUBLISH properties                   | will-message.ts          |
// | all Subscription Identifiers on one copy  | subscription-identifiers.ts |
// | the control plane's dispatch              | device-dispatch.ts       |
// | aedes' private fields                     | aedes-internals.ts       |
//
// Telemetry itself is decoded, turned into rows and queued by
// broker/ingest/telemetry-intake.ts; the publish hook only hands it over.
import type { Server as HttpServer } from 'node:http'
import memoryPersistence from 'aedes-persistence'
import { Aedes } from 'aedes'
import { createHookGuard } from './hook-guard.js'
import { createLogSampler } from './log-sampler.js'
import { withTimeout } from '../with-timeout.js'
import { markReplayed } from './connack-first.js'
import { createAuthFailures, createConnectGate } from './connection-limits.js'
import { assertInternals, clientsOf, hardenBroker, interceptPublish, rewritePublish, sliceReads } from './aedes-internals.js'
import { withoutWillOnlyProperties } from './will-message.js'
import { watchOutboundDiscards } from './outbound-limits.js'
import { watchSessionExpiry } from './session-expiry.js'
import { createExactlyOnce, type IncomingStore } from './qos2-exactly-once.js'
import { createAuthenticateHooks } from './authenticate.js'
import { createAuthorizePublish } from './authorize-publish.js'
import { createAuthorizeSubscribe } from './authorize-subscribe.js'
import { createSessionDelivery } from './session-delivery.js'
import { watchClientEvents } from './client-events.js'
import { createConnectionHandler } from './connection.js'
import { startListeners, type TlsListenerOptions } from './listeners.js'
import type { FleetClient } from './fleet-client.js'
import { devicePublishClass } from './topic-acl.js'
import { createTelemetryIntake } from '../ingest/telemetry-intake.js'
import type { IngestQueue } from '../ingest/ingest-queue.js'
import type { IngestRow } from '../ingest/telemetry-sink.js'
import type { Logger } from '../logger.js'
import type { Metrics } from '../metrics.js'
import type { PresenceTracker } from '../fleet/presence-tracker.js'
import type { CredentialCache } from '../../devices/credential-cache.js'
import type { DeviceSessions } from '../../devices/device-sessions.js'

export type { TlsListenerOptions } from './listeners.js'

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
  /** Largest MQTT packet, fixed header included; larger closes the connection unread (advertised to v5 clients). */
  maxPacketBytes?: number
  /** QoS 1/2 PUBLISHes a client may have unanswered (MQTT 5 Receive Maximum; for 3.1.1 QoS 2 only). Default 1000. */
  receiveMaximum?: number
  /** Highest MQTT 5 Topic Alias a client may use (0: none). Default 64. */
  topicAliasMaximum?: number
  /** Cap of the MQTT 5 Session Expiry Interval, in seconds (0: no cap). Default 0. */
  sessionExpiryMaxSeconds?: number
  /** How long a 3.1.1 persistent session outlives its connection, in seconds (0: for ever, as aedes does). Default 0. */
  sessionExpiryDefaultSeconds?: number
  /** MQTT 5 Server Keep Alive for v5 clients asking for more or none, in seconds (0: off). Default 0. */
  serverKeepAliveSeconds?: number
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
  /** Disconnects every client (v5: DISCONNECT 0x8B) and closes aedes. */
  close (): Promise<void>
}

// aedes-persistence is CommonJS whose module.exports is the factory; its type
// definitions declare it as a default export.
const createMemoryPersistence = memoryPersistence as unknown as () => unknown

/** Bytes of a socket parsed at once while the ingest queue is full (some 30–70 small PUBLISHes; a bigger packet is parsed across slices). */
const READ_SLICE_WHEN_FULL = 4096

export async function startMqttBroker (opts: MqttBrokerOptions): Promise<MqttBroker> {
  const { metrics, log, presence } = opts
  const lim = opts.limits
  const maxPacketBytes = opts.maxPacketBytes ?? 268_435_455
  const guard = createHookGuard({ log, onError: (hook) => metrics.hookErrors.inc({ hook }) })
  // What devices can cause per message or per connection attempt is counted
  // in full and logged as a sample (log-sampler.ts), with the count left out.
  const sampler = createLogSampler()
  const sampled = (key: string, fields: Record<string, unknown>, msg: string) => {
    const skipped = sampler.take(key)
    if (skipped !== undefined) log.info(skipped > 0 ? { ...fields, skipped } : fields, msg)
  }

  const intake = createTelemetryIntake({
    queue: opts.queue,
    metrics,
    maxBytes: opts.telemetryMaxBytes,
    maxReadings: opts.telemetryMaxReadings,
    maxDepth: opts.telemetryMaxDepth,
    retentionDays: opts.telemetryRetentionDays,
    maxFutureMs: opts.telemetryMaxFutureMs,
    note: sampled,
    fail: (owner, err) => guard.fail('ingest', owner as FleetClient, err)
  })
  // The session store (Redis in cluster mode, else aedes' in-memory one),
  // its queue replay recorded for connack-first.ts, its QoS 2 state for
  // qos2-exactly-once.ts.
  const replayed = markReplayed((opts.persistence ?? createMemoryPersistence()) as never)
  const { store: sessionStore, exactlyOnce } = createExactlyOnce(replayed as unknown as IncomingStore)
  const gate = lim ? createConnectGate({ ratePerSecond: lim.connectRatePerSecond, burst: lim.connectRatePerSecond, maxQueued: lim.connectQueue }) : undefined
  const authFailures = createAuthFailures({ baseDelayMs: 100, maxDelayMs: lim?.authFailureMaxDelayMs ?? 0, forgetAfterMs: 600_000, maxTracked: 100_000 })

  let aedesRef: Aedes | undefined
  const connecting = createAuthenticateHooks({
    aedes: () => aedesRef!,
    credentials: opts.credentials,
    allowAnonymous: opts.allowAnonymous,
    tls: opts.tls,
    gate,
    authFailures,
    exactlyOnce,
    serverKeepAliveSeconds: opts.serverKeepAliveSeconds ?? 0,
    guard,
    metrics,
    log,
    sampled
  })
  const receiveMaximum = opts.receiveMaximum ?? 1000
  const publishing = createAuthorizePublish({
    intake,
    sessions: opts.sessions,
    presence,
    exactlyOnce,
    limits: lim,
    receiveMaximum,
    guard,
    metrics,
    log,
    sampled
  })
  const subscribing = createAuthorizeSubscribe({ guard, metrics, sampled })

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
    // MQTT 5 limits, advertised in CONNACK: the same limit is enforced first
    // at the parser (packet-size-limit.ts) and in authorize-publish.ts.
    maximumPacketSize: maxPacketBytes,
    receiveMaximum,
    topicAliasMaximum: opts.topicAliasMaximum ?? 64,
    sessionExpiryIntervalLimit: opts.sessionExpiryMaxSeconds ?? 0,
    preConnect: connecting.preConnect as never,
    authenticate: connecting.authenticate as never,
    authorizePublish: publishing.authorizePublish as never,
    authorizeSubscribe: subscribing.authorizeSubscribe as never,
    authorizeForward: subscribing.authorizeForward as never
  } as never)
  aedesRef = aedes
  assertInternals(aedes)
  hardenBroker(aedes)
  rewritePublish(aedes, withoutWillOnlyProperties)
  // While publishers wait for room in the ingest queue, a connection's socket
  // is parsed a slice at a time instead of a whole read: aedes parses every
  // packet of what it reads before answering any, so a device with 256
  // small PUBLISHes in flight would otherwise have all of them held as
  // parsed objects (~2.7 KB of heap each) while the queue is full (issue 15,
  // target 4). The rest waits unread in the socket; TCP pushes back.
  sliceReads(aedes, () => opts.queue.waiting > 0 ? READ_SLICE_WHEN_FULL : 0)

  // What devices publish (telemetry, reported config, command results) is
  // stored, never delivered: authorizeForward refuses it to every subscriber.
  // Routing it through aedes (retained store, offline queues, mqemitter)
  // would only cost CPU, so once such a message has passed authorizePublish
  // (and PUBACK is written) its publish step ends here.
  interceptPublish(aedes, (packet, client) => {
    const deviceId = (client as FleetClient).fgDeviceId
    return deviceId !== undefined && devicePublishClass(deviceId, packet.topic) !== undefined
  })

  const delivery = createSessionDelivery({ sessions: opts.sessions, log })
  watchClientEvents({ aedes, presence, intake, delivery, exactlyOnce, isAnswered: publishing.isAnswered, guard, metrics, log })
  watchOutboundDiscards({ aedes, guard, metrics, sampled })
  // 3.1.1 sessions capped like v5 ones (the cap applies to the default too).
  const cap = opts.sessionExpiryMaxSeconds ?? 0
  const legacyExpiry = opts.sessionExpiryDefaultSeconds ?? 0
  const sessionExpiry = watchSessionExpiry({ aedes, defaultSeconds: cap > 0 && legacyExpiry > cap ? cap : legacyExpiry, exactlyOnce, guard, log })
  const handle = createConnectionHandler({ aedes, maxPacketBytes, guard, metrics, log, sampled })
  const listeners = await startListeners({
    host: opts.host,
    port: opts.port,
    tcp: opts.tcp,
    tls: opts.tls,
    listenBacklog: opts.listenBacklog,
    maxConnections: lim?.maxConnections,
    maxPacketBytes,
    handle,
    metrics,
    log
  })

  const connectedDevices = () => Object.values(clientsOf(aedes) as Record<string, FleetClient>).filter((c) => c.fgDeviceId !== undefined && c.connected)
  const stopAccepting = () => { listeners.stopAccepting(); return Promise.resolve() }

  let closeP: Promise<void> | undefined
  return {
    aedes,
    port: listeners.port,
    tlsPort: listeners.tlsPort,
    attachWebSocket: (server, path) => listeners.attachWebSocket(server, path),
    connectedDeviceIds () {
      return connectedDevices().map((c) => c.fgDeviceId!)
    },
    redeliverAll () {
      for (const c of connectedDevices()) delivery.redeliver(c)
    },
    get listening () { return listeners.listening },
    stopAccepting,
    close () {
      closeP ??= (async () => {
        await stopAccepting()
        intake.close()
        gate?.close()
        sessionExpiry.close()
        for (const c of Object.values(clientsOf(aedes) as Record<string, FleetClient>)) c.fgReason ??= 'server_shutdown'
        // aedes closes every client (v5: DISCONNECT 0x8B), then its
        // mqemitter; with Redis gone the latter never calls back, so it is
        // not waited for beyond 5 s (the cluster backend then drops its
        // connections).
        await withTimeout(new Promise<void>((resolve) => aedes.close(() => resolve())), 5000)
        metrics.connectedClients.set(0)
      })()
      return closeP
    }
  }
}

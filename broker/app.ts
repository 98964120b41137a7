// The composition root: every long-lived dependency (database, pool, metrics
// registry, queue, writers, presence, aedes, HTTP server, control plane) is
// created here, once, and passed to what needs it.
//
// Start-up order: database → HTTP (so /healthz answers and /readyz says why
// it is not ready yet) → migrations → MQTT listener → ready.
// Each component is registered with the lifecycle (lifecycle.ts) when it is
// created, with its phase; close() and a failed start-up run that one list:
// readiness off and stop accepting → drain ingest → background work → close
// the broker (clients) and Redis → flush presence, deregister → close HTTP →
// change feed, pool, embedded database.
import { randomUUID } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import type { FastifyInstance } from 'fastify'
import type { Config } from './config.js'
import type { Logger } from './logger.js'
import { createMetrics, type Metrics } from './metrics.js'
import { readBuildInfo } from './build-info.js'
import { startEmbeddedPostgres, type EmbeddedPostgres } from './embedded-postgres.js'
import { createPool, ping, type Pool } from './database-pool.js'
import { migrate } from './migrator.js'
import { createIngestQueue, type IngestQueue } from './ingest/ingest-queue.js'
import { createBatchWriter, type BatchWriter } from './ingest/batch-writer.js'
import { createTelemetrySink, type IngestRow } from './ingest/telemetry-sink.js'
import { createPresenceTracker, type PresenceTracker } from './fleet/presence-tracker.js'
import { createTelemetryRetention, type TelemetryRetention } from './ingest/telemetry-retention.js'
import { startMqttBroker, type MqttBroker } from './mqtt/mqtt-broker.js'
import { createHttpServer } from './http-server.js'
import { startChangeFeed } from './fleet/change-feed.js'
import { createDeviceDispatch } from './mqtt/device-dispatch.js'
import { createClusterBackend, type ClusterBackend } from './fleet/cluster-backend.js'
import { startClusterDispatch, type ClusterDispatch } from './fleet/cluster-dispatch.js'
import { createBrokerRegistry, type BrokerRegistry } from './fleet/broker-registry.js'
import { withTimeout } from './with-timeout.js'
import { createLifecycle } from './lifecycle.js'
import { every, warnOnError } from './periodic.js'
import { createDeviceStore, type DeviceStore } from '../devices/device-store.js'
import { createCredentialCache } from '../devices/credential-cache.js'
import { createConfigStore } from '../devices/config-store.js'
import { createCommandStore } from '../devices/command-store.js'
import { createAuditStore } from '../devices/audit-store.js'
import { createAuditRetention, type AuditRetention } from './fleet/audit-retention.js'
import { createTokenStore } from '../devices/token-store.js'
import { createOperatorAuth } from '../devices/operator-auth.js'
import { createRolloutRunner } from '../devices/rollout-runner.js'
import { createDeviceSessions } from '../devices/device-sessions.js'
import { CHANNELS, type DeviceDispatch } from '../devices/dispatch.js'
import { createBatchLoader } from '../devices/batch-loader.js'
import { createLocalEventHub, type EventHub } from '../devices/fleet-events.js'
import { createClusterEventHub } from './fleet/cluster-events.js'
import { createEventRetention } from './fleet/event-retention.js'
import { telemetryEvents } from './ingest/telemetry-events.js'
import { createReplicaStats } from './replica-stats.js'

export interface App {
  readonly brokerId: string
  readonly mqttPort: number
  readonly mqttTlsPort?: number
  readonly httpPort: number
  readonly databaseUrl: string
  readonly pool: Pool
  readonly metrics: Metrics
  readonly queue: IngestQueue<IngestRow>
  readonly writer: BatchWriter
  readonly presence: PresenceTracker
  readonly retention: TelemetryRetention
  /** Trims the audit trail to AUDIT_RETENTION_DAYS. */
  readonly auditRetention: AuditRetention
  readonly mqtt: MqttBroker
  readonly http: FastifyInstance
  readonly devices: DeviceStore
  /** The fleet's events (GET /v1/events): committed changes, telemetry, presence. */
  readonly events: EventHub
  /** Ordered, idempotent shutdown; resolves when everything is closed. */
  close (): Promise<void>
}

export interface AppOptions {
  /** Collect Node.js default metrics (off in tests that start many apps in one process). */
  defaultMetrics?: boolean
  /** Called when the HTTP server listens, before migrations and MQTT (tests watch readiness flip). */
  onHttpListening? (port: number): void | Promise<void>
}

export async function startApp (config: Config, log: Logger, options: AppOptions = {}): Promise<App> {
  const brokerId = randomUUID()
  const build = readBuildInfo()
  const metrics = createMetrics({ collectDefault: options.defaultMetrics, build })
  // Every component is registered here as soon as it exists; a start-up
  // that fails half-way and the shutdown run the same ordered list.
  const lifecycle = createLifecycle(log)
  const fail = async (err: unknown): Promise<never> => {
    await lifecycle.stop()
    throw err
  }
  const startedAt = Date.now()
  // Background work whose failure is retried or caught up later: logged and counted.
  const backgroundError = (task: string, err: Error) => {
    metrics.backgroundErrors.inc({ task })
    log.warn({ task, err: { message: err.message, code: (err as { code?: string }).code } }, 'background task failed')
  }
  let phase: 'starting' | 'migrating' | 'starting MQTT' | 'ready' | 'draining' = 'starting'

  try {
    // ---- database ----
    let embedded: EmbeddedPostgres | undefined
    let databaseUrl = config.DATABASE_URL
    if (!databaseUrl) {
      embedded = await startEmbeddedPostgres({ dataDir: config.DATA_DIR, log: log.child({ component: 'postgres' }) })
      lifecycle.add('stop embedded postgres', 'database', () => embedded!.stop())
      databaseUrl = embedded.url
    }
    const pool = createPool({ url: databaseUrl, max: config.DB_POOL_MAX, statementTimeoutMs: config.DB_STATEMENT_TIMEOUT_MS, log: log.child({ component: 'pool' }) })
    lifecycle.add('end pool', 'database', () => pool.end())
    const changeFeed = await startChangeFeed(databaseUrl, log.child({ component: 'change-feed' }))
    lifecycle.add('close change feed', 'database', () => changeFeed.close())

    // ---- device domain ----
    // Every event of the fleet goes through this hub (devices/fleet-events.ts).
    // In cluster mode it carries them between replicas over Redis
    // (fleet/cluster-events.ts, which says why Redis).
    const localEvents = createLocalEventHub()
    let events: EventHub = localEvents
    if (config.REDIS_URL) {
      const bus = createClusterEventHub({ url: config.REDIS_URL, brokerId, local: localEvents, log: log.child({ component: 'event-bus' }) })
      lifecycle.add('close event bus', 'connections', () => bus.close())
      events = bus
    }
    // Credentials changed here drop from this cache at once; the NOTIFY drops
    // them from every other replica's cache (and ours again, harmlessly).
    const devices = createDeviceStore(pool, {
      onCredentialsChanged: (id) => {
        credentials.invalidate(id)
        // Not delivered: other replicas keep the old credentials until
        // AUTH_CACHE_TTL_MS. Logged and counted; the change itself is stored.
        pool.query('SELECT pg_notify($1, $2)', [CHANNELS.credentials, id]).catch((err: Error) => backgroundError('credentials_notify', err))
      },
      // Bulk actions: one statement for all the NOTIFYs.
      onCredentialsChangedMany: (ids) => {
        for (const id of ids) credentials.invalidate(id)
        pool.query('SELECT count(pg_notify($1, id)) FROM unnest($2::text[]) AS u(id)', [CHANNELS.credentials, ids]).catch((err: Error) => backgroundError('credentials_notify', err))
      }
    })
    const credentials = createCredentialCache({
      ttlMs: config.AUTH_CACHE_TTL_MS,
      max: config.AUTH_CACHE_MAX,
      // Batched: CONNECTs arriving together share one query.
      load: createBatchLoader((ids: string[]) => devices.credentialsMany(ids)),
      onHit: () => metrics.authCache.inc({ result: 'hit' }),
      onMiss: () => metrics.authCache.inc({ result: 'miss' })
    })
    changeFeed.on(CHANNELS.credentials, (id) => credentials.invalidate(id))
    const configs = createConfigStore({ pool, hub: events })
    const commands = createCommandStore(pool, { events })
    const audit = createAuditStore(pool)
    const tokens = createTokenStore(pool, backgroundError)
    // The broker implements dispatch, but aedes exists only once MQTT is
    // started; the control plane reaches it through this late-bound reference.
    let dispatch: DeviceDispatch | undefined
    const lateDispatch: DeviceDispatch = {
      deliver: (id, topic, payload) => dispatch ? dispatch.deliver(id, topic, payload) : Promise.resolve(false),
      disconnect: (id) => dispatch ? dispatch.disconnect(id) : Promise.resolve(),
      endSession: (id) => dispatch ? dispatch.endSession(id) : Promise.resolve()
    }
    const sessions = createDeviceSessions({ configs, commands, dispatch: lateDispatch })
    const rollouts = createRolloutRunner({ pool, dispatch: lateDispatch, hub: events, commands, log: log.child({ component: 'rollouts' }), onAutoPause: () => metrics.rolloutAutoPauses.inc() })
    lifecycle.add('stop rollouts', 'work', () => rollouts.close())

    // ---- ingestion ----
    const queue = createIngestQueue<IngestRow>(config.INGEST_QUEUE_ROWS, config.INGEST_QUEUE_BYTES, {
      onBackpressure: (ms) => metrics.backpressureSeconds.inc(ms / 1000)
    })
    metrics.queueCapacity.set(config.INGEST_QUEUE_ROWS)
    metrics.observe({
      oldestBatchSeconds: () => writer.oldestBatchMs() / 1000,
      queueRows: () => queue.rows,
      queueWaiting: () => queue.waiting,
      poolTotal: () => pool.totalCount,
      poolIdle: () => pool.idleCount,
      poolWaiting: () => pool.waitingCount
    })
    const ingestLog = log.child({ component: 'ingest' })
    const writer = createBatchWriter<IngestRow>({
      queue,
      sink: createTelemetrySink(pool, ingestLog, { onDeadLetterLost: () => metrics.deadLettersLost.inc(), events }),
      batchRows: config.INGEST_BATCH_ROWS,
      flushMs: config.INGEST_FLUSH_MS,
      writers: config.INGEST_WRITERS,
      retryMaxMs: config.INGEST_RETRY_MAX_MS,
      log: ingestLog,
      observer: {
        onBatch: (rows, seconds) => { metrics.batchRows.observe(rows); metrics.flushSeconds.observe(seconds) },
        onRetry: () => metrics.retries.inc(),
        onStoreFault: (err) => metrics.storeFaults.inc({ code: (err as { code?: string }).code ?? 'unknown' }),
        onRowRejected: () => metrics.deadLetters.inc({ reason: 'db_rejected' }),
        onQueueWait: (s) => metrics.queueWait.observe(s),
        onCommitted: (rows) => metrics.rowsCommitted.inc(rows),
        // Live telemetry events: built only while some stream (on any replica) wants them.
        onRowsCommitted: (rows) => { if (events.wants('telemetry')) events.publish(telemetryEvents(rows)) }
      }
    })
    // Refuse new telemetry (those publishers get no PUBACK and retry
    // elsewhere), then commit everything admitted, so each acknowledged — or
    // about to be acknowledged — reading is stored while its connection is
    // still open for the PUBACK. If PostgreSQL is down the drain cannot
    // finish: after half the shutdown budget what is left is abandoned; it
    // was never acknowledged, so its devices retransmit.
    lifecycle.add('drain ingest', 'drain', async () => {
      queue.close(new Error('server is shutting down'))
      const result = await withTimeout(writer.drain().then(() => 'drained' as const), config.SHUTDOWN_TIMEOUT_MS / 2)
      if (result !== 'drained') {
        log.error({ queuedRows: queue.rows, batchesInFlight: writer.busy }, 'ingest could not be drained in time; unacknowledged messages are abandoned (devices will retransmit)')
        writer.abort(new Error('shutdown deadline'))
      }
    })

    // ---- HTTP first: probes answer during start-up ----
    // /healthz: the event loop has not been stalled longer than the limit
    // (a stalled loop cannot answer at all; a long stall is reported after).
    const loopDelay = monitorEventLoopDelay({ resolution: 50 })
    loopDelay.enable()
    let loopMaxMs = 0
    const loopWatch = every(async () => { loopMaxMs = loopDelay.max / 1e6; loopDelay.reset() }, { intervalMs: 10_000, onError: warnOnError(log, 'event loop monitor') })
    lifecycle.add('stop event loop monitor', 'serve', async () => { await loopWatch.close(); loopDelay.disable() })

    let mqtt: MqttBroker | undefined
    // Cluster mode: Redis connections are opened now. A replica started while
    // Redis is away serves HTTP (not ready) and opens its MQTT listener once
    // the session store answers; one that loses Redis later keeps ingesting.
    let cluster: ClusterBackend | undefined
    if (config.REDIS_URL) {
      cluster = createClusterBackend(config.REDIS_URL, log.child({ component: 'redis' }))
      lifecycle.add('close redis', 'connections', () => cluster!.close())
    }
    const readiness = {
      async check (): Promise<string | undefined> {
        if (phase === 'draining') return 'draining'
        if (phase === 'starting' || phase === 'migrating') return 'migrations not applied yet'
        if (!mqtt?.listening) return 'MQTT listener not accepting'
        // A write held by locks or a slow disk fails nothing, so it is
        // watched by age (issue 11).
        const stalledMs = writer.oldestBatchMs()
        if (stalledMs > config.INGEST_STALL_MS) return `database writes stalled: a batch has been in flight for ${Math.round(stalledMs / 1000)} s`
        if (writer.degraded) return writer.problem ?? 'database writes failing'
        const redis = cluster?.problem()
        if (redis) return redis
        try { await ping(pool) } catch { return 'database unreachable' }
        return undefined
      }
    }
    // GET /v1/overview's view of this replica (the console's live overview).
    const stats = createReplicaStats({
      metrics,
      queueRows: () => queue.rows,
      queueCapacity: config.INGEST_QUEUE_ROWS,
      notReady: () => readiness.check(),
      databaseOk: () => ping(pool).then(() => true, () => false),
      redisOk: () => cluster ? cluster.problem() === undefined : undefined
    })
    // A first sample now (all counters at their start values): rates cover
    // what happens from the start, not only after the first tick.
    await stats.sample()
    const statsSampler = every(() => stats.sample(), { intervalMs: 2000, onError: warnOnError(log, 'overview stats') })
    lifecycle.add('stop overview stats', 'serve', () => statsSampler.close())
    const http = await createHttpServer({
      log: log.child({ component: 'http' }),
      trustProxy: config.HTTP_TRUST_PROXY,
      metrics,
      controlPlane: {
        pool,
        audit,
        devices,
        configs,
        commands,
        rollouts,
        tokens,
        events,
        auth: createOperatorAuth({ adminToken: config.ADMIN_TOKEN, tokens, failuresPerMinute: config.API_AUTH_FAILURES_PER_MINUTE }),
        dispatch: lateDispatch,
        changes: changeFeed,
        rateLimitPerMinute: config.API_RATE_LIMIT_PER_MINUTE,
        maxWaitSeconds: config.COMMAND_MAX_WAIT_SECONDS,
        onCommandStatus: (status) => metrics.commands.inc({ status }),
        eventStreams: {
          limits: { bufferEvents: config.EVENTS_STREAM_BUFFER, maxPerToken: config.EVENTS_MAX_STREAMS_PER_TOKEN, maxTotal: config.EVENTS_MAX_STREAMS, heartbeatMs: config.EVENTS_HEARTBEAT_MS },
          onStreams: (delta) => metrics.eventStreams.inc(delta),
          onSent: (n) => metrics.eventsSent.inc(n),
          onDropped: (n) => metrics.eventsDropped.inc(n)
        },
        stats
      },
      health: {
        check: () => loopMaxMs > config.HEALTH_MAX_EVENT_LOOP_DELAY_MS ? `event loop stalled ${Math.round(loopMaxMs)} ms` : undefined
      },
      readiness
    })
    lifecycle.add('close http', 'serve', () => http.close())
    await http.listen({ host: config.HTTP_HOST, port: config.HTTP_PORT })
    const httpAddress = http.server.address()
    const httpPort = typeof httpAddress === 'object' && httpAddress ? httpAddress.port : config.HTTP_PORT
    await options.onHttpListening?.(httpPort)

    // ---- schema ----
    phase = 'migrating'
    await migrate(pool, log.child({ component: 'migrator' }))
    // Presence of replicas that died without shutting down expires through
    // heartbeats (broker-registry.ts); no replica resets the whole fleet.
    // Set once MQTT runs: tells presence again about every connected device.
    let reannounce = () => {}
    const registry: BrokerRegistry = createBrokerRegistry({
      pool,
      brokerId,
      heartbeatMs: config.BROKER_HEARTBEAT_MS,
      expiryMs: config.BROKER_EXPIRY_MS,
      log: log.child({ component: 'registry' }),
      onSwept: (n) => metrics.presenceExpired.inc(n),
      onRevived: () => reannounce()
    })
    await registry.start()
    lifecycle.add('deregister', 'state', () => registry.close())
    const retention = createTelemetryRetention({
      pool,
      retentionDays: config.TELEMETRY_RETENTION_DAYS,
      intervalMs: config.RETENTION_INTERVAL_MS,
      log: log.child({ component: 'retention' }),
      onRun: (r) => metrics.retentionRuns.inc({ result: r.ran ? 'ran' : 'skipped_locked' })
    })
    lifecycle.add('stop retention', 'work', () => retention.close())
    const eventRetention = createEventRetention({ pool, retentionHours: config.EVENT_RETENTION_HOURS, intervalMs: config.RETENTION_INTERVAL_MS, log: log.child({ component: 'event-retention' }) })
    lifecycle.add('stop event retention', 'work', () => eventRetention.close())
    const auditRetention = createAuditRetention({ audit, retentionDays: config.AUDIT_RETENTION_DAYS, intervalMs: config.RETENTION_INTERVAL_MS, log: log.child({ component: 'audit-retention' }) })
    lifecycle.add('stop audit retention', 'work', () => auditRetention.close())
    await retention.run()

    // ---- MQTT ----
    phase = 'starting MQTT'
    const presence = createPresenceTracker({
      pool,
      brokerId,
      flushMs: config.PRESENCE_FLUSH_MS,
      log: log.child({ component: 'presence' }),
      onFlush: (ok) => metrics.presenceFlushes.inc({ result: ok ? 'ok' : 'error' }),
      events
    })
    lifecycle.add('flush presence', 'state', () => withTimeout(presence.close(), 2000))
    const tls = config.MQTT_TLS_ENABLED
      ? {
          port: config.MQTT_TLS_PORT,
          key: await readFile(config.MQTT_TLS_KEY_FILE!),
          cert: await readFile(config.MQTT_TLS_CERT_FILE!),
          ca: config.MQTT_TLS_CA_FILE ? await readFile(config.MQTT_TLS_CA_FILE) : undefined,
          clientCert: config.MQTT_TLS_CLIENT_CERT,
          passwordAuth: config.MQTT_TLS_PASSWORD_AUTH
        }
      : undefined
    mqtt = await startMqttBroker({
      host: config.MQTT_HOST,
      port: config.MQTT_PORT,
      tcp: config.MQTT_TCP_ENABLED,
      tls,
      limits: {
        maxConnections: config.MQTT_MAX_CONNECTIONS,
        connectRatePerSecond: config.MQTT_CONNECT_RATE_PER_SECOND,
        connectQueue: config.MQTT_CONNECT_QUEUE,
        authFailureMaxDelayMs: config.MQTT_AUTH_FAILURE_MAX_DELAY_MS,
        publishMessagesPerSecond: config.DEVICE_PUBLISH_MESSAGES_PER_SECOND,
        publishBytesPerSecond: config.DEVICE_PUBLISH_BYTES_PER_SECOND,
        throttleDisconnectMs: config.DEVICE_THROTTLE_DISCONNECT_MS,
        drainTimeoutMs: config.MQTT_DRAIN_TIMEOUT_MS
      },
      listenBacklog: config.MQTT_LISTEN_BACKLOG,
      brokerId,
      allowAnonymous: config.MQTT_ALLOW_ANONYMOUS,
      connectTimeoutMs: config.MQTT_CONNECT_TIMEOUT_MS,
      maxPacketBytes: config.MQTT_MAX_PACKET_BYTES,
      topicAliasMaximum: config.MQTT_TOPIC_ALIAS_MAXIMUM,
      sessionExpiryMaxSeconds: config.MQTT_SESSION_EXPIRY_MAX_SECONDS,
      sessionExpiryDefaultSeconds: config.MQTT_SESSION_EXPIRY_DEFAULT_SECONDS,
      serverKeepAliveSeconds: config.MQTT_SERVER_KEEPALIVE_SECONDS,
      telemetryMaxBytes: config.TELEMETRY_MAX_BYTES,
      telemetryMaxReadings: config.TELEMETRY_MAX_READINGS,
      telemetryMaxDepth: config.TELEMETRY_MAX_DEPTH,
      telemetryRetentionDays: config.TELEMETRY_RETENTION_DAYS,
      telemetryMaxFutureMs: config.TELEMETRY_MAX_FUTURE_MS,
      credentials,
      queue,
      presence,
      sessions,
      metrics,
      mq: cluster?.mq,
      persistence: cluster?.persistence,
      log: log.child({ component: 'mqtt' })
    })
    const broker = mqtt
    lifecycle.add('close broker', 'connections', () => broker.close())
    // Readiness is already false by then; stop taking new MQTT connections.
    lifecycle.add('stop accepting', 'accept', () => broker.stopAccepting())
    reannounce = () => { for (const id of broker.connectedDeviceIds()) presence.connected(id, undefined, { event: false }) }
    if (config.MQTT_WS_ENABLED) broker.attachWebSocket(http.server, config.MQTT_WS_PATH)
    const localDispatch = createDeviceDispatch(broker.aedes, (kind) => metrics.deliveries.inc({ kind }))
    let clusterDispatch: ClusterDispatch | undefined
    if (cluster) {
      clusterDispatch = startClusterDispatch({
        local: localDispatch,
        pub: cluster.pub,
        sub: cluster.sub,
        brokerId,
        timeoutMs: config.CLUSTER_DISPATCH_TIMEOUT_MS,
        healthy: () => cluster!.problem() === undefined,
        log: log.child({ component: 'cluster-dispatch' }),
        onRemote: (outcome, n) => metrics.clusterDispatch.inc({ outcome }, n)
      })
      lifecycle.add('stop cluster dispatch', 'work', () => clusterDispatch!.close())
    }
    dispatch = clusterDispatch ?? localDispatch
    // While Redis was away, pushes were answered "not delivered" and only
    // stored; once it is back, connected devices get what they missed.
    if (cluster) {
      let redisWasDown = false
      const redisWatch = every(async () => {
        const down = cluster!.problem() !== undefined
        if (redisWasDown && !down) {
          log.info('redis reachable again: delivering configs and commands stored meanwhile')
          broker.redeliverAll()
        }
        redisWasDown = down
      }, { intervalMs: 1000, onError: warnOnError(log, 'redis watch') })
      lifecycle.add('stop redis watch', 'work', () => redisWatch.close())
    }
    rollouts.start()
    // Commands past their TTL expire even if nobody asks (one UPDATE a second).
    const expiry = every(async () => {
      const n = await commands.expire()
      if (n > 0) metrics.commands.inc({ status: 'expired' }, n)
    }, { intervalMs: 1000, onError: (err) => backgroundError('command_expiry', err) })
    lifecycle.add('stop command expiry', 'work', () => expiry.close())
    if (!config.ADMIN_TOKEN) log.warn('ADMIN_TOKEN is not set: only API tokens created with `npm run -s token:create` can use the REST API')
    phase = 'ready'
    log.info({ ms: Date.now() - startedAt, ...build }, 'started')

    let closing: Promise<void> | undefined
    async function close (): Promise<void> {
      phase = 'draining'
      await lifecycle.stop()
    }

    return {
      brokerId,
      mqttPort: broker.port,
      mqttTlsPort: broker.tlsPort,
      httpPort,
      databaseUrl,
      pool,
      metrics,
      queue,
      writer,
      presence,
      retention,
      auditRetention,
      mqtt: broker,
      http,
      devices,
      events,
      close () {
        closing ??= close()
        return closing
      }
    }
  } catch (err) {
    return await fail(err)
  }
}

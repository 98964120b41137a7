// One prom-client registry per process, created at start-up and passed in
// (never the global default registry). Names follow Prometheus conventions:
// fleetgate_ prefix, base units, _total counters, _seconds histograms, and no
// per-device labels (cardinality stays bounded whatever the fleet size).
import client from 'prom-client'
import type { BuildInfo } from './build-info.js'
import { HotHistogram } from './hot-histogram.js'

export type Metrics = ReturnType<typeof createMetrics>

const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]

/** Gauges read at scrape time from the live objects (set by the composition root). */
export interface MetricSources {
  queueRows? (): number
  queueWaiting? (): number
  poolTotal? (): number
  poolIdle? (): number
  poolWaiting? (): number
  oldestBatchSeconds? (): number
}

export function createMetrics (opts: { collectDefault?: boolean, build?: BuildInfo } = {}) {
  const registry = new client.Registry()
  const sources: MetricSources = {}
  const gaugeFrom = (name: string, help: string, read: () => number | undefined) =>
    new client.Gauge({ name, help, registers: [registry], collect () { const v = read(); if (v !== undefined) this.set(v) } })
  // Node.js process metrics under their standard names (process_cpu_seconds_total,
  // nodejs_eventloop_lag_seconds, …), so stock Node.js dashboards and alerts work.
  if (opts.collectDefault !== false) client.collectDefaultMetrics({ register: registry })
  const r = [registry]
  // Counted once per telemetry message (issue 15): plain additions here, handed
  // to the prom-client counters when they are read (their `collect`), instead
  // of a labelled inc() per message.
  const pending = { telemetry: [0, 0, 0], bytesIn: 0, readingsAccepted: 0 }
  if (opts.build) {
    new client.Gauge({ name: 'fleetgate_build_info', help: 'Always 1; what is running: fleetgate version and commit, aedes and Node.js versions', labelNames: ['version', 'commit', 'aedes_version', 'node_version'] as const, registers: r })
      .set({ version: opts.build.version, commit: opts.build.commit, aedes_version: opts.build.aedesVersion, node_version: opts.build.nodeVersion }, 1)
  }

  return {
    registry,
    /** Connects the scrape-time gauges to their sources. */
    observe (src: MetricSources) { Object.assign(sources, src) },
    // connections
    connectedClients: new client.Gauge({ name: 'fleetgate_mqtt_connected_clients', help: 'MQTT clients connected now', registers: r }),
    connects: new client.Counter({ name: 'fleetgate_mqtt_connects_total', help: 'Accepted MQTT connections (CONNACK 0)', registers: r }),
    disconnects: new client.Counter({ name: 'fleetgate_mqtt_disconnects_total', help: 'MQTT disconnections by reason', labelNames: ['reason'] as const, registers: r }),
    connackRefusals: new client.Counter({ name: 'fleetgate_mqtt_connack_refusals_total', help: 'CONNECTs refused, by CONNACK return code and reason', labelNames: ['code', 'reason'] as const, registers: r }),
    authCache: new client.Counter({ name: 'fleetgate_auth_cache_lookups_total', help: 'Credential cache look-ups by result', labelNames: ['result'] as const, registers: r }),
    aclRefusals: new client.Counter({ name: 'fleetgate_mqtt_acl_refusals_total', help: 'Publishes and subscriptions refused by the ACL', labelNames: ['action'] as const, registers: r }),
    // traffic
    publishes: new client.Counter({
      name: 'fleetgate_mqtt_publishes_received_total',
      help: 'PUBLISH packets received, by topic class and QoS',
      labelNames: ['topic_class', 'qos'] as const,
      registers: r,
      collect () {
        for (let qos = 0; qos < 3; qos++) {
          const n = pending.telemetry[qos]!
          if (n > 0) { pending.telemetry[qos] = 0; this.inc({ topic_class: 'telemetry', qos }, n) }
        }
      }
    }),
    bytesIn: new client.Counter({
      name: 'fleetgate_mqtt_publish_bytes_received_total',
      help: 'Payload bytes received in PUBLISH packets',
      registers: r,
      collect () { if (pending.bytesIn > 0) { this.inc(pending.bytesIn); pending.bytesIn = 0 } }
    }),
    /** One telemetry PUBLISH received (counted in publishes{telemetry} and bytesIn when read). */
    telemetryReceived (qos: 0 | 1 | 2, bytes: number) { pending.telemetry[qos]!++; pending.bytesIn += bytes },
    /** Readings accepted into the ingest queue (counted in readingsAccepted when read). */
    readingsTaken (n: number) { pending.readingsAccepted += n },
    // ingestion
    queueRows: gaugeFrom('fleetgate_ingest_queue_rows', 'Readings waiting in the ingest queue', () => sources.queueRows?.()),
    queueCapacity: new client.Gauge({ name: 'fleetgate_ingest_queue_capacity_rows', help: 'Capacity of the ingest queue', registers: r }),
    queueWaiting: gaugeFrom('fleetgate_ingest_publishers_waiting', 'Publishers held because the ingest queue is full', () => sources.queueWaiting?.()),
    poolTotal: gaugeFrom('fleetgate_db_pool_connections', 'PostgreSQL pool connections open', () => sources.poolTotal?.()),
    poolIdle: gaugeFrom('fleetgate_db_pool_idle_connections', 'PostgreSQL pool connections idle', () => sources.poolIdle?.()),
    poolWaiting: gaugeFrom('fleetgate_db_pool_waiting_requests', 'Requests waiting for a PostgreSQL pool connection', () => sources.poolWaiting?.()),
    queueWait: new HotHistogram({ name: 'fleetgate_ingest_queue_wait_seconds', help: 'Time a message waited in the queue before its batch was cut', buckets: LATENCY_BUCKETS, registers: r }),
    batchRows: new client.Histogram({ name: 'fleetgate_ingest_batch_rows', help: 'Rows per committed batch', buckets: [1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000], registers: r }),
    flushSeconds: new client.Histogram({ name: 'fleetgate_ingest_flush_seconds', help: 'Time to commit one batch, retries included', buckets: LATENCY_BUCKETS, registers: r }),
    rowsCommitted: new client.Counter({ name: 'fleetgate_ingest_rows_committed_total', help: 'Rows committed (readings and dead letters)', registers: r }),
    readingsAccepted: new client.Counter({
      name: 'fleetgate_ingest_readings_accepted_total',
      help: 'Readings accepted into the ingest queue',
      registers: r,
      collect () { if (pending.readingsAccepted > 0) { this.inc(pending.readingsAccepted); pending.readingsAccepted = 0 } }
    }),
    oldestBatchSeconds: gaugeFrom('fleetgate_ingest_oldest_batch_age_seconds', 'Age of the oldest batch being written (0 when none): a stalled write shows here', () => sources.oldestBatchSeconds?.()),
    storeFaults: new client.Counter({ name: 'fleetgate_ingest_store_faults_total', help: 'Batch writes refused for every row (table-wide constraint, trigger, missing partition): held and retried, not dead-lettered', labelNames: ['code'] as const, registers: r }),
    retries: new client.Counter({ name: 'fleetgate_ingest_retries_total', help: 'Batch writes retried after a database error', registers: r }),
    deadLetters: new client.Counter({ name: 'fleetgate_ingest_dead_letters_total', help: 'Messages or readings dead-lettered, by reason', labelNames: ['reason'] as const, registers: r }),
    deadLettersLost: new client.Counter({ name: 'fleetgate_ingest_dead_letters_lost_total', help: 'Dead letters PostgreSQL refused to store (logged at error)', registers: r }),
    refused: new client.Counter({ name: 'fleetgate_ingest_messages_refused_total', help: 'Telemetry messages refused without PUBACK (the device retransmits), by reason', labelNames: ['reason'] as const, registers: r }),
    throttledSeconds: new client.Counter({ name: 'fleetgate_mqtt_publish_throttled_seconds_total', help: 'Time device publishes were held for exceeding their publish budget', registers: r }),
    backpressureSeconds: new client.Counter({ name: 'fleetgate_ingest_backpressure_seconds_total', help: 'Total time publishers were held because the queue was full', registers: r }),
    pubackLatency: new HotHistogram({ name: 'fleetgate_ingest_ack_latency_seconds', help: 'From telemetry PUBLISH received to its batch committed (PUBACK sent for QoS 1)', buckets: LATENCY_BUCKETS, registers: r }),
    // control plane
    deviceMessages: new client.Counter({ name: 'fleetgate_device_messages_total', help: 'Reported configs and command results from devices, by outcome (recorded, invalid, unknown, finished, error)', labelNames: ['kind', 'outcome'] as const, registers: r }),
    deliveries: new client.Counter({ name: 'fleetgate_deliveries_total', help: 'Configs and commands handed to a connected device', labelNames: ['kind'] as const, registers: r }),
    rolloutAutoPauses: new client.Counter({ name: 'fleetgate_rollout_auto_pauses_total', help: 'Rollouts this process paused because their failures crossed maxFailures or maxFailureRatio', registers: r }),
    commands: new client.Counter({ name: 'fleetgate_commands_total', help: 'Command status transitions seen by this process', labelNames: ['status'] as const, registers: r }),
    httpDuration: new client.Histogram({ name: 'fleetgate_http_request_duration_seconds', help: 'HTTP request duration by route and status', labelNames: ['method', 'route', 'status'] as const, buckets: LATENCY_BUCKETS, registers: r }),
    retentionRuns: new client.Counter({ name: 'fleetgate_retention_runs_total', help: 'Telemetry retention rounds, by result (ran, skipped_locked: another replica held the lock)', labelNames: ['result'] as const, registers: r }),
    configSyncLag: new client.Histogram({ name: 'fleetgate_config_sync_lag_seconds', help: 'From a desired config version being set to the device reporting it', buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600], registers: r }),
    // presence
    connectionErrors: new client.Counter({ name: 'fleetgate_mqtt_connection_errors_total', help: 'Connections closed before a CONNECT was accepted, by reason', labelNames: ['reason'] as const, registers: r }),
    protocolViolations: new client.Counter({ name: 'fleetgate_mqtt_protocol_violations_total', help: 'Connections closed for a packet that breaks an MQTT rule, by rule (broker/mqtt/protocol-rules.ts)', labelNames: ['rule'] as const, registers: r }),
    hookErrors: new client.Counter({ name: 'fleetgate_mqtt_hook_errors_total', help: 'Errors inside an MQTT hook or event handler; each closed its connection', labelNames: ['hook'] as const, registers: r }),
    duplicatesIgnored: new client.Counter({ name: 'fleetgate_mqtt_qos2_duplicates_total', help: 'QoS 2 PUBLISH repeats of a packet id awaiting PUBREL: answered with PUBREC, not stored again', registers: r }),
    oversizedPackets: new client.Counter({ name: 'fleetgate_mqtt_oversized_packets_total', help: 'Connections closed for a packet larger than MQTT_MAX_PACKET_BYTES', registers: r }),
    outboundDiscarded: new client.Counter({ name: 'fleetgate_mqtt_outbound_discarded_total', help: 'MQTT 5 PUBLISHes not sent to one client: larger than its Maximum Packet Size (packet_too_large), or its Receive Maximum window full with 1000 more waiting (queue_full)', labelNames: ['reason'] as const, registers: r }),
    presenceExpired: new client.Counter({ name: 'fleetgate_presence_expired_total', help: 'Devices set offline because their replica stopped heartbeating', registers: r }),
    clusterDispatch: new client.Counter({ name: 'fleetgate_cluster_dispatch_total', help: 'Configs, commands and disconnects sent to devices on other replicas, by outcome', labelNames: ['outcome'] as const, registers: r }),
    backgroundErrors: new client.Counter({ name: 'fleetgate_background_errors_total', help: 'Failures of background work that is retried or catches up later, by task (logged at warn)', labelNames: ['task'] as const, registers: r }),
    presenceFlushes: new client.Counter({ name: 'fleetgate_presence_flushes_total', help: 'Presence batches written, by result', labelNames: ['result'] as const, registers: r }),
    // event streams (GET /v1/events)
    eventStreams: new client.Gauge({ name: 'fleetgate_event_streams', help: 'Event streams (GET /v1/events) open on this replica', registers: r }),
    eventsSent: new client.Counter({ name: 'fleetgate_events_sent_total', help: 'Events written to event streams (one per stream)', registers: r }),
    eventsDropped: new client.Counter({ name: 'fleetgate_events_dropped_total', help: 'Events dropped because a stream\'s client did not keep up (its buffer was full)', registers: r })
  }
}

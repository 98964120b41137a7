{{/*
The alerts of templates/prometheusrule.yaml, as a YAML list (rendered, then
filtered by metrics.prometheusRule.disabledAlerts). Each has a runbook
section in README.md ("Alerts and runbook") under its own name, which is
where runbook_url points. Series come from broker/metrics.ts, except
FleetgateNotReady (kube-state-metrics) and FleetgateDown (Prometheus' own
`up`). Text between {{` and `}} is Prometheus' alert templating, not Helm's.
*/}}
{{- define "fleetgate.alerts" -}}
{{- $p := .Values.metrics.prometheusRule -}}
{{- $t := $p.thresholds -}}
{{- $fullname := include "fleetgate.fullname" . -}}
{{- $ns := .Release.Namespace -}}
{{- $s := $p.selector | default (printf "job=%q,namespace=%q" (printf "%s-http" $fullname) $ns) -}}
{{- $stall := divf (int64 .Values.config.INGEST_STALL_MS) 1000 -}}
- alert: FleetgateIngestQueueSaturated
  severity: warning
  for: 5m
  expr: fleetgate_ingest_queue_rows{ {{- $s -}} } / fleetgate_ingest_queue_capacity_rows{ {{- $s -}} } > {{ $t.queueSaturationRatio }}
  summary: {{ `fleetgate ingest queue {{ $value | humanizePercentage }} full on {{ $labels.namespace }}/{{ $labels.pod }}` | quote }}
  description: {{ printf "The ingest queue of %s has held more than %v%% of its capacity (config.INGEST_QUEUE_ROWS) for 5 minutes: PostgreSQL commits telemetry more slowly than devices send it. Once it is full, publishers are held (backpressure) and PUBACKs slow down." `{{ $labels.pod }}` (mulf $t.queueSaturationRatio 100) | quote }}
- alert: FleetgateIngestBackpressure
  severity: warning
  for: 5m
  expr: fleetgate_ingest_publishers_waiting{ {{- $s -}} } > 0
  summary: {{ `fleetgate is holding publishers on {{ $labels.namespace }}/{{ $labels.pod }}: ingest queue full` | quote }}
  description: {{ `{{ $value }} publishers on {{ $labels.pod }} have been waiting for room in the full ingest queue for 5 minutes. Devices are slowed down (no PUBACK until their batch commits); nothing is lost, but telemetry is late.` | quote }}
- alert: FleetgateIngestRetrying
  severity: warning
  for: 10m
  expr: rate(fleetgate_ingest_retries_total{ {{- $s -}} }[5m]) > 0
  summary: {{ `fleetgate batch writes failing and being retried on {{ $labels.namespace }}/{{ $labels.pod }}` | quote }}
  description: {{ `Batch writes to PostgreSQL on {{ $labels.pod }} have failed and been retried ({{ printf "%.3g" $value }} retries/s) for 10 minutes. The batches are held, not dropped; their devices get no PUBACK until they commit.` | quote }}
- alert: FleetgateIngestWriteStalled
  severity: critical
  for: 1m
  expr: fleetgate_ingest_oldest_batch_age_seconds{ {{- $s -}} } > {{ $stall }}
  summary: {{ `fleetgate telemetry write stalled on {{ $labels.namespace }}/{{ $labels.pod }}` | quote }}
  description: {{ printf "A batch on %s has been in flight for %s s, longer than config.INGEST_STALL_MS (%v s): the write is stuck (locks, a slow disk, a hung connection). The replica reports not ready meanwhile." `{{ $labels.pod }}` `{{ printf "%.0f" $value }}` $stall | quote }}
- alert: FleetgateIngestStoreFaults
  severity: critical
  for: 1m
  expr: increase(fleetgate_ingest_store_faults_total{ {{- $s -}} }[5m]) > 0
  summary: {{ `PostgreSQL refuses every telemetry row on {{ $labels.namespace }}/{{ $labels.pod }} (SQLSTATE {{ $labels.code }})` | quote }}
  description: {{ `Batch writes on {{ $labels.pod }} are refused for every row (SQLSTATE {{ $labels.code }}: a table-wide constraint or trigger, a missing partition). The rows are held and retried, not dead-lettered: no telemetry is being stored, and the queue fills.` | quote }}
- alert: FleetgateDeadLetters
  severity: warning
  for: 15m
  expr: sum by (namespace, job, reason) (rate(fleetgate_ingest_dead_letters_total{ {{- $s -}} }[10m])) > {{ $t.deadLettersPerSecond }}
  summary: {{ `fleetgate dead-lettering telemetry: {{ $labels.reason }}` | quote }}
  description: {{ `Devices in {{ $labels.namespace }} send telemetry that is dead-lettered as {{ $labels.reason }} at {{ printf "%.3g" $value }}/s (15 minutes). It is acknowledged and stored in dead_letters, not in telemetry: a device firmware or clock problem, usually.` | quote }}
- alert: FleetgateDeadLettersLost
  severity: critical
  for: 0m
  expr: increase(fleetgate_ingest_dead_letters_lost_total{ {{- $s -}} }[10m]) > 0
  summary: {{ `fleetgate could not store dead letters on {{ $labels.namespace }}/{{ $labels.pod }}` | quote }}
  description: {{ `PostgreSQL refused to store {{ printf "%.0f" $value }} dead letters on {{ $labels.pod }} in the last 10 minutes. Those messages are gone (logged at error, not stored anywhere).` | quote }}
- alert: FleetgateConnectionsRefused
  severity: warning
  for: 15m
  expr: sum by (namespace, job, code, reason) (rate(fleetgate_mqtt_connack_refusals_total{ {{- $s -}} ,reason!~"max_connections|connect_queue_full"}[10m])) > {{ $t.connackRefusalsPerSecond }}
  summary: {{ `fleetgate refusing MQTT connections: {{ $labels.reason }} (CONNACK {{ $labels.code }})` | quote }}
  description: {{ `MQTT CONNECTs in {{ $labels.namespace }} are refused with CONNACK {{ $labels.code }} ({{ $labels.reason }}) at {{ printf "%.3g" $value }}/s for 15 minutes: devices with wrong or revoked credentials, a disabled fleet, or someone guessing.` | quote }}
- alert: FleetgateConnectionCapacity
  severity: warning
  for: 5m
  expr: sum by (namespace, job, reason) (rate(fleetgate_mqtt_connack_refusals_total{ {{- $s -}} ,reason=~"max_connections|connect_queue_full"}[5m])) > 0
  summary: {{ `fleetgate out of connection capacity: {{ $labels.reason }}` | quote }}
  description: {{ `New MQTT connections in {{ $labels.namespace }} are turned away for lack of capacity ({{ $labels.reason }}, {{ printf "%.3g" $value }}/s) for 5 minutes: config.MQTT_MAX_CONNECTIONS or the CONNECT queue is exhausted. Devices retry, and stay offline meanwhile.` | quote }}
- alert: FleetgateProtocolViolations
  severity: warning
  for: 15m
  expr: sum by (namespace, job, rule) (rate(fleetgate_mqtt_protocol_violations_total{ {{- $s -}} }[10m])) > {{ $t.protocolViolationsPerSecond }}
  summary: {{ `MQTT clients breaking protocol rule {{ $labels.rule }}` | quote }}
  description: {{ `Connections in {{ $labels.namespace }} are closed for breaking the MQTT rule {{ $labels.rule }} at {{ printf "%.3g" $value }}/s for 15 minutes: a client library bug or a misbehaving firmware release.` | quote }}
- alert: FleetgateReplicaHeartbeatMissed
  severity: warning
  for: 0m
  expr: sum by (namespace, job) (increase(fleetgate_presence_expired_total{ {{- $s -}} }[10m])) > 0
  summary: {{ `a fleetgate replica in {{ $labels.namespace }} stopped heartbeating` | quote }}
  description: {{ printf "A replica missed its heartbeats for config.BROKER_EXPIRY_MS (%v s) and the others set its %s devices offline in the last 10 minutes: it was killed, partitioned from PostgreSQL, or stalled." (divf (int64 .Values.config.BROKER_EXPIRY_MS) 1000) `{{ printf "%.0f" $value }}` | quote }}
- alert: FleetgateNotReady
  severity: warning
  for: 5m
  expr: |-
    (kube_pod_status_ready{namespace={{ $ns | quote }},condition="true"} == 0)
    * on (namespace, pod) group_left (owner_name)
    kube_pod_owner{namespace={{ $ns | quote }},owner_kind="ReplicaSet",owner_name=~{{ printf "%s-[a-z0-9]+" $fullname | quote }}}
  summary: {{ `fleetgate pod {{ $labels.namespace }}/{{ $labels.pod }} not ready` | quote }}
  description: {{ `{{ $labels.pod }} has failed its readiness probe (/readyz) for 5 minutes, so the Services send it no devices. /readyz says why: PostgreSQL or Redis unreachable, a stalled write, draining. (From kube-state-metrics.)` | quote }}
- alert: FleetgateDown
  severity: critical
  for: 5m
  expr: sum by (namespace, job) (up{ {{- $s -}} }) == 0 or absent(up{ {{- $s -}} })
  summary: {{ `no fleetgate replica is up in {{ $labels.namespace }}` | quote }}
  description: {{ `Prometheus has scraped no fleetgate replica ({{ $labels.job }}) for 5 minutes: none is running, or none answers /metrics. Devices cannot connect.` | quote }}
{{- end -}}

{{/* Names and labels (Helm's conventions: 63 characters, no trailing dash). */}}
{{- define "fleetgate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "fleetgate.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "fleetgate.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "fleetgate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "fleetgate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "fleetgate.labels" -}}
helm.sh/chart: {{ include "fleetgate.chart" . }}
{{ include "fleetgate.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: fleetgate
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* commonAnnotations as a metadata.annotations block (nothing when empty). */}}
{{- define "fleetgate.commonAnnotations" -}}
{{- with .Values.commonAnnotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
{{- end }}
{{- end -}}

{{- define "fleetgate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "fleetgate.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "fleetgate.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* The existing Secret with DATABASE_URL: required, since the chart never holds a password. */}}
{{- define "fleetgate.secretName" -}}
{{- required "existingSecret.name is required: create a Secret holding DATABASE_URL (and ADMIN_TOKEN) before installing, e.g. `kubectl create secret generic fleetgate --from-literal=DATABASE_URL=postgres://user:password@host:5432/fleetgate --from-literal=ADMIN_TOKEN=$(openssl rand -hex 24)`, then pass --set existingSecret.name=fleetgate" .Values.existingSecret.name -}}
{{- end -}}

{{/*
Labels of a pod that is not a broker (the in-chart Redis, the migration Job,
the helm test) and of its objects. It gets its own app.kubernetes.io/name:
the broker's Services, PodDisruptionBudget and anti-affinity select on
name + instance, and must never pick such a pod (a running migration or test
pod would otherwise receive device connections).
Call with (dict "root" $ "name" "redis" "component" "redis" "version" "7.4").
*/}}
{{- define "fleetgate.componentSelectorLabels" -}}
app.kubernetes.io/name: {{ .name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "fleetgate.componentLabels" -}}
helm.sh/chart: {{ include "fleetgate.chart" .root }}
{{ include "fleetgate.componentSelectorLabels" . }}
app.kubernetes.io/version: {{ .version | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: fleetgate
{{- with .root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* ---- In-chart Redis (redis.enabled) ---- */}}

{{/* Name of the in-chart Redis objects: <fullname>-redis. */}}
{{- define "fleetgate.redis.fullname" -}}
{{- printf "%s-redis" (include "fleetgate.fullname" . | trunc 57 | trimSuffix "-") -}}
{{- end -}}

{{- define "fleetgate.redis.labels" -}}
{{ include "fleetgate.componentLabels" (dict "root" . "name" "redis" "component" "redis" "version" .Values.redis.image.tag) }}
{{- end -}}

{{- define "fleetgate.redis.selectorLabels" -}}
{{ include "fleetgate.componentSelectorLabels" (dict "root" . "name" "redis" "component" "redis") }}
{{- end -}}

{{- define "fleetgate.redis.image" -}}
{{- $i := .Values.redis.image -}}
{{- if $i.digest -}}
{{- printf "%s@%s" $i.repository $i.digest -}}
{{- else -}}
{{- printf "%s:%s" $i.repository $i.tag -}}
{{- end -}}
{{- end -}}

{{/* The Secret holding the in-chart Redis password, and its key. */}}
{{- define "fleetgate.redis.secretName" -}}
{{- default (include "fleetgate.redis.fullname" .) .Values.redis.auth.existingSecret -}}
{{- end -}}

{{- define "fleetgate.redis.secretKey" -}}
{{- if .Values.redis.auth.existingSecret -}}
{{- required "redis.auth.existingSecretPasswordKey is required with redis.auth.existingSecret" .Values.redis.auth.existingSecretPasswordKey -}}
{{- else -}}
redis-password
{{- end -}}
{{- end -}}

{{/*
The generated password, base64: redis.auth.password when given; otherwise the
one already in the release's Secret (lookup), so an upgrade keeps it (a new
random one would leave the running Redis and the broker pods on different
passwords); a new random one only on first install. `helm template` and
--dry-run cannot look up, and print a random one.
*/}}
{{- define "fleetgate.redis.passwordB64" -}}
{{- if .Values.redis.auth.password -}}
{{- .Values.redis.auth.password | b64enc -}}
{{- else -}}
{{- $existing := lookup "v1" "Secret" .Release.Namespace (include "fleetgate.redis.fullname" .) -}}
{{- if and $existing $existing.data (index $existing.data "redis-password") -}}
{{- index $existing.data "redis-password" -}}
{{- else -}}
{{- randAlphaNum 32 | b64enc -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* True (non-empty) when the broker gets a REDIS_URL. */}}
{{- define "fleetgate.redis.configured" -}}
{{- if or .Values.redis.enabled .Values.externalRedis.url .Values.externalRedis.existingSecret -}}true{{- end -}}
{{- end -}}

{{/*
env entries for REDIS_URL. For the in-chart Redis the password is read from
its Secret into REDIS_PASSWORD, which must come first: Kubernetes expands
$(REDIS_PASSWORD) only from variables defined before it.
*/}}
{{- define "fleetgate.redis.env" -}}
{{- if .Values.redis.enabled }}
{{- $host := include "fleetgate.redis.fullname" . }}
{{- if .Values.redis.auth.enabled }}
- name: REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "fleetgate.redis.secretName" . }}
      key: {{ include "fleetgate.redis.secretKey" . }}
- name: REDIS_URL
  value: {{ printf "redis://:$(REDIS_PASSWORD)@%s:6379" $host | quote }}
{{- else }}
- name: REDIS_URL
  value: {{ printf "redis://%s:6379" $host | quote }}
{{- end }}
{{- else if .Values.externalRedis.existingSecret }}
- name: REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.externalRedis.existingSecret }}
      key: {{ .Values.externalRedis.existingSecretKey }}
{{- else if .Values.externalRedis.url }}
- name: REDIS_URL
  value: {{ .Values.externalRedis.url | quote }}
{{- end }}
{{- end -}}

{{/* env entries read from the existing Secret. */}}
{{- define "fleetgate.secretEnv" -}}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "fleetgate.secretName" . }}
      key: {{ required "existingSecret.databaseUrlKey is required" .Values.existingSecret.databaseUrlKey }}
{{- end -}}

{{/* Seconds of the SHUTDOWN_TIMEOUT_MS budget, rounded up. */}}
{{- define "fleetgate.shutdownSeconds" -}}
{{- div (add (int64 .Values.config.SHUTDOWN_TIMEOUT_MS) 999) 1000 -}}
{{- end -}}

{{/*
terminationGracePeriodSeconds: the kubelet SIGKILLs the pod this long after
deletion starts, preStop sleep included. It must outlast the sleep plus the
broker's whole shutdown budget, or acknowledged-but-unflushed state is cut.
*/}}
{{- define "fleetgate.terminationGracePeriodSeconds" -}}
{{- $needed := add (int64 .Values.preStopSleepSeconds) (include "fleetgate.shutdownSeconds" . | int64) -}}
{{- $set := int64 .Values.terminationGracePeriodSeconds -}}
{{- if eq $set 0 -}}
{{- add $needed 10 -}}
{{- else if le $set $needed -}}
{{- fail (printf "terminationGracePeriodSeconds (%d) must exceed preStopSleepSeconds (%d) + config.SHUTDOWN_TIMEOUT_MS (%d s) = %d, or pods are killed in the middle of their drain; set it to 0 to compute it" $set (int64 .Values.preStopSleepSeconds) (include "fleetgate.shutdownSeconds" . | int64) $needed) -}}
{{- else -}}
{{- $set -}}
{{- end -}}
{{- end -}}

{{/* A config value as an environment string: YAML numbers reach templates as
floats, and 67108864 must not become "6.7108864e+07". */}}
{{- define "fleetgate.envValue" -}}
{{- if kindIs "float64" . -}}
{{- if eq (float64 (int64 .)) . -}}{{- int64 . -}}{{- else -}}{{- . -}}{{- end -}}
{{- else -}}
{{- . -}}
{{- end -}}
{{- end -}}

{{/* Rules that span several values (the schema checks each on its own). */}}
{{- define "fleetgate.validate" -}}
{{- $c := .Values.config -}}
{{- if and .Values.redis.enabled (or .Values.externalRedis.url .Values.externalRedis.existingSecret) -}}
{{- fail "redis.enabled and externalRedis are both set: choose the in-chart Redis or an external one" -}}
{{- end -}}
{{- if and .Values.redis.enabled .Values.redis.auth.password .Values.redis.auth.existingSecret -}}
{{- fail "redis.auth.password and redis.auth.existingSecret are both set: give the password one way" -}}
{{- end -}}
{{- if and .Values.tls.enabled (not .Values.tls.existingSecret) -}}
{{- fail "tls.enabled=true needs tls.existingSecret: a Secret with tls.crt and tls.key (and ca.crt for client certificates)" -}}
{{- end -}}
{{- if and (not .Values.tls.passwordAuth) (ne .Values.tls.clientCert "required") -}}
{{- fail "tls.passwordAuth=false needs tls.clientCert=required (something must identify the device)" -}}
{{- end -}}
{{- if le (int64 $c.DB_POOL_MAX) (int64 $c.INGEST_WRITERS) -}}
{{- fail (printf "config.DB_POOL_MAX (%d) must be greater than config.INGEST_WRITERS (%d) so the control plane keeps a connection" (int64 $c.DB_POOL_MAX) (int64 $c.INGEST_WRITERS)) -}}
{{- end -}}
{{- if and (hasKey $c "BROKER_EXPIRY_MS") (hasKey $c "BROKER_HEARTBEAT_MS") -}}
{{- if le (int64 $c.BROKER_EXPIRY_MS) (mul 2 (int64 $c.BROKER_HEARTBEAT_MS)) -}}
{{- fail (printf "config.BROKER_EXPIRY_MS (%d) must exceed 2 × config.BROKER_HEARTBEAT_MS (%d), or a live replica's devices may be set offline" (int64 $c.BROKER_EXPIRY_MS) (int64 $c.BROKER_HEARTBEAT_MS)) -}}
{{- end -}}
{{- end -}}
{{- if and (not $c.MQTT_TCP_ENABLED) (not .Values.tls.enabled) (not $c.MQTT_WS_ENABLED) -}}
{{- fail "no MQTT transport: enable config.MQTT_TCP_ENABLED, tls.enabled or config.MQTT_WS_ENABLED" -}}
{{- end -}}
{{- if and .Values.pdb.enabled (not (kindIs "invalid" .Values.pdb.minAvailable)) (not (kindIs "invalid" .Values.pdb.maxUnavailable)) -}}
{{- fail "pdb.minAvailable and pdb.maxUnavailable are both set: set one (the other to null)" -}}
{{- end -}}
{{- if and (or .Values.autoscaling.enabled (gt (int64 .Values.replicaCount) 1)) (not (include "fleetgate.redis.configured" .)) -}}
{{- fail "more than one replica (replicaCount > 1 or autoscaling.enabled) needs Redis for shared MQTT routing, sessions and dispatch: set externalRedis.url, externalRedis.existingSecret or redis.enabled=true" -}}
{{- end -}}
{{- if and .Values.autoscaling.enabled (lt (int64 .Values.autoscaling.maxReplicas) (int64 .Values.autoscaling.minReplicas)) -}}
{{- fail (printf "autoscaling.maxReplicas (%d) must be at least autoscaling.minReplicas (%d)" (int64 .Values.autoscaling.maxReplicas) (int64 .Values.autoscaling.minReplicas)) -}}
{{- end -}}
{{- if and .Values.autoscaling.enabled (eq (int64 .Values.autoscaling.targetCPUUtilizationPercentage) 0) (not .Values.autoscaling.connections.enabled) -}}
{{- fail "autoscaling.enabled needs a metric: autoscaling.targetCPUUtilizationPercentage > 0 or autoscaling.connections.enabled" -}}
{{- end -}}
{{- end -}}

// The Helm chart (helm/fleetgate): it lints, renders objects the Kubernetes
// API accepts for every supported value set, wires secrets, probes, shutdown
// and security the way the broker needs, and refuses bad values with a
// message that names them. No cluster: `helm template` plus the Kubernetes
// OpenAPI schemas (kubernetes-models). The chart is rendered straight from
// the checkout, offline: it has no dependencies to download.
import test from 'ava'
import { existsSync } from 'node:fs'
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parse } from 'yaml'
import { ConfigMap, Pod, Secret, Service, ServiceAccount } from 'kubernetes-models/v1'
import { Deployment, StatefulSet } from 'kubernetes-models/apps/v1'
import { Job } from 'kubernetes-models/batch/v1'
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1'
import { HorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2'
import { Ingress } from 'kubernetes-models/networking.k8s.io/v1'
import { PrometheusRule, ServiceMonitor } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1'
import { ConfigSchema } from '../../broker/config.js'
import { CHART as chart, helm, renderChart, type Doc, type Rendered } from '../helpers/helm.js'

type Model = new (data: never) => { validate (): void }

// Every kind the chart renders, with the class that validates it against the
// API schema. A new kind must be added here (an unknown one fails the test).
const MODELS: Record<string, Model> = {
  'v1/ConfigMap': ConfigMap,
  'v1/Service': Service,
  'v1/ServiceAccount': ServiceAccount,
  'v1/Secret': Secret,
  'v1/Pod': Pod,
  'apps/v1/Deployment': Deployment,
  'apps/v1/StatefulSet': StatefulSet,
  'batch/v1/Job': Job,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
  'autoscaling/v2/HorizontalPodAutoscaler': HorizontalPodAutoscaler,
  'networking.k8s.io/v1/Ingress': Ingress,
  'monitoring.coreos.com/v1/ServiceMonitor': ServiceMonitor,
  'monitoring.coreos.com/v1/PrometheusRule': PrometheusRule
}

// Settings of broker/config.ts that the chart sets itself (ports, addresses,
// TLS files, secrets) rather than through `config`.
const CHART_MANAGED = new Set([
  'DATABASE_URL', 'ADMIN_TOKEN', 'REDIS_URL', 'DATA_DIR', 'MQTT_HOST', 'HTTP_HOST', 'MQTT_PORT', 'HTTP_PORT',
  'MQTT_TLS_ENABLED', 'MQTT_TLS_PORT', 'MQTT_TLS_KEY_FILE', 'MQTT_TLS_CERT_FILE', 'MQTT_TLS_CA_FILE',
  'MQTT_TLS_CLIENT_CERT', 'MQTT_TLS_PASSWORD_AUTH'
])

const SECRET = { existingSecret: { name: 'fleetgate-db' } }
const REDIS = { externalRedis: { url: 'redis://redis.example:6379' } }

const render = async (values: Record<string, unknown>): Promise<Rendered> => await renderChart(chart, { ...SECRET, ...values })

function find (docs: Doc[], kind: string, nameSuffix = ''): Doc {
  const d = docs.find((x) => x.kind === kind && String(x.metadata?.name).endsWith(nameSuffix))
  if (!d) throw new Error(`no ${kind}${nameSuffix ? ` named *${nameSuffix}` : ''} in ${docs.map((x) => `${x.kind}/${x.metadata?.name}`).join(', ')}`)
  return d
}

function validateAll (docs: Doc[]): string[] {
  const problems: string[] = []
  for (const doc of docs) {
    const Cls = MODELS[`${doc.apiVersion}/${doc.kind}`]
    if (!Cls) { problems.push(`${doc.apiVersion} ${doc.kind}: no schema model (add it to MODELS)`); continue }
    try { new Cls(doc as never).validate() } catch (err) { problems.push(`${doc.kind}/${doc.metadata?.name}: ${(err as Error).message}`) }
  }
  return problems
}

const brokerContainer = (docs: Doc[]): Doc => find(docs, 'Deployment').spec.template.spec.containers.find((c: Doc) => c.name === 'broker')
const envOf = (container: Doc): Map<string, Doc> => new Map((container.env ?? []).map((e: Doc) => [e.name, e]))

// ---------------------------------------------------------------------------

test('helm lint passes with the required Secret name, with defaults and with the in-chart Redis and alerts on', async (t) => {
  for (const extra of [[], ['--set', 'redis.enabled=true', '--set', 'replicaCount=2', '--set', 'metrics.prometheusRule.enabled=true']]) {
    const r = await helm(['lint', chart, '--strict', '--set', 'existingSecret.name=fleetgate-db', ...extra])
    t.is(r.code, 0, r.stdout + r.stderr)
    t.regex(r.stdout, /1 chart\(s\) linted, 0 chart\(s\) failed/)
  }
})

const VALUE_SETS: Record<string, Record<string, unknown>> = {
  defaults: {},
  tls: { tls: { enabled: true, existingSecret: 'mqtt-tls', clientCert: 'required', passwordAuth: false } },
  'external Redis, 3 replicas': { ...REDIS, replicaCount: 3 },
  'external Redis URL from a Secret': { externalRedis: { existingSecret: 'redis-url', existingSecretKey: 'url' }, replicaCount: 2 },
  'in-chart Redis': { redis: { enabled: true }, replicaCount: 2 },
  'in-chart Redis: existing password Secret, no persistence, extra config': { redis: { enabled: true, auth: { existingSecret: 'redis-pw' }, persistence: { enabled: false }, extraConfig: 'maxmemory 400mb' } },
  'in-chart Redis without a password': { redis: { enabled: true, auth: { enabled: false } } },
  PrometheusRule: { metrics: { prometheusRule: { enabled: true, labels: { release: 'kube-prometheus-stack' } } } },
  autoscaling: { ...REDIS, autoscaling: { enabled: true, connections: { enabled: true } } },
  ServiceMonitor: { metrics: { serviceMonitor: { enabled: true, labels: { release: 'kube-prometheus-stack' } } } },
  ingress: { ingress: { enabled: true, className: 'nginx', hosts: [{ host: 'fleet.example.com', paths: [{ path: '/', pathType: 'Prefix' }] }], tls: [{ secretName: 'fleet-tls', hosts: ['fleet.example.com'] }] } },
  'NodePort, Local traffic policy, hard anti-affinity, minAvailable': {
    service: { mqtt: { type: 'NodePort', nodePorts: { mqtt: 31883 }, externalTrafficPolicy: 'Local' } },
    podAntiAffinityPreset: 'hard',
    pdb: { minAvailable: 1, maxUnavailable: null }
  },
  'everything off': { metrics: { dashboard: { enabled: false } }, pdb: { enabled: false }, migrations: { enabled: false }, serviceAccount: { create: false }, tests: { enabled: false }, preStopSleepSeconds: 0 }
}

for (const [name, values] of Object.entries(VALUE_SETS)) {
  test(`renders valid Kubernetes objects: ${name}`, async (t) => {
    const r = await render(values)
    t.is(r.code, 0, r.stderr)
    t.true(r.docs.length > 3)
    t.deepEqual(validateAll(r.docs), [])
    for (const d of r.docs) {
      t.regex(d.metadata.name, /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, `${d.kind} name is a DNS label`)
      if (d.kind !== 'ServiceMonitor' || !(values as Doc).metrics?.serviceMonitor?.namespace) t.is(d.metadata.namespace, 'iot', `${d.kind} is in the release namespace`)
    }
  })
}

test('the broker container: image entry point, ports, probes, secrets from the existing Secret', async (t) => {
  const { docs } = await render({})
  const c = brokerContainer(docs)
  t.is(c.command, undefined, 'the image CMD (node dist/broker/main.js, like npm start) runs')
  t.deepEqual(c.ports.map((p: Doc) => [p.name, p.containerPort]), [['mqtt', 1883], ['http', 8080]])
  t.like(c.livenessProbe, { httpGet: { path: '/healthz', port: 'http' } })
  t.like(c.readinessProbe, { httpGet: { path: '/readyz', port: 'http' } })
  t.like(c.startupProbe, { httpGet: { path: '/healthz', port: 'http' } })
  const env = envOf(c)
  t.deepEqual(env.get('DATABASE_URL')?.valueFrom, { secretKeyRef: { name: 'fleetgate-db', key: 'DATABASE_URL' } })
  t.deepEqual(env.get('ADMIN_TOKEN')?.valueFrom, { secretKeyRef: { name: 'fleetgate-db', key: 'ADMIN_TOKEN', optional: true } }, 'optional: a Secret without it means API tokens only')
  t.false(env.has('REDIS_URL'), 'one replica without Redis: no cluster mode')
  t.deepEqual(c.envFrom, [{ configMapRef: { name: 'fg-fleetgate' } }])

  const cm = find(docs, 'ConfigMap', '-fleetgate').data as Record<string, string>
  t.like(cm, { MQTT_PORT: '1883', HTTP_PORT: '8080', MQTT_TLS_ENABLED: 'false', LOG_LEVEL: 'info' })
  t.is(cm.INGEST_QUEUE_BYTES, '67108864', 'large numbers are not written in float notation')
  t.is(cm.TELEMETRY_RETENTION_DAYS, '30')
  for (const v of Object.values(cm)) t.is(typeof v, 'string')
})

test('no secret material in any ConfigMap', async (t) => {
  const { docs } = await render({ ...REDIS, replicaCount: 2, tls: { enabled: true, existingSecret: 'mqtt-tls' } })
  for (const cm of docs.filter((d) => d.kind === 'ConfigMap')) {
    for (const key of ['DATABASE_URL', 'ADMIN_TOKEN', 'REDIS_PASSWORD']) t.false(key in (cm.data ?? {}), `${key} in ConfigMap ${cm.metadata.name}`)
    t.notRegex(JSON.stringify(cm.data), /postgres(ql)?:\/\//)
  }
  // …and the schema refuses to put one there.
  const r = await render({ config: { DATABASE_URL: 'postgres://u:p@db/fleetgate' } })
  t.not(r.code, 0)
  t.regex(r.stderr, /additional properties 'DATABASE_URL' not allowed/)
})

test('pod security: non-root, read-only root file system with /tmp, no privilege escalation, no capabilities, RuntimeDefault seccomp', async (t) => {
  const { docs } = await render({})
  for (const pod of [find(docs, 'Deployment').spec.template.spec, find(docs, 'Job').spec.template.spec]) {
    t.like(pod.securityContext, { runAsNonRoot: true, seccompProfile: { type: 'RuntimeDefault' } })
    t.not(pod.securityContext.runAsUser, 0)
    t.false(pod.automountServiceAccountToken)
    for (const c of pod.containers) {
      t.like(c.securityContext, { runAsNonRoot: true, allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, privileged: false, seccompProfile: { type: 'RuntimeDefault' } })
      t.deepEqual(c.securityContext.capabilities.drop, ['ALL'])
      t.is(c.securityContext.capabilities.add, undefined)
      const tmp = c.volumeMounts.find((m: Doc) => m.mountPath === '/tmp')
      t.truthy(tmp, `${c.name} has a writable /tmp`)
      t.truthy(pod.volumes.find((v: Doc) => v.name === tmp.name).emptyDir)
    }
  }
  t.false(find(docs, 'ServiceAccount').automountServiceAccountToken)
})

test('shutdown: preStop sleep, then a grace period longer than the sleep plus the broker\'s SHUTDOWN_TIMEOUT_MS', async (t) => {
  const grace = async (values: Record<string, unknown>) => {
    const r = await render(values)
    t.is(r.code, 0, r.stderr)
    const pod = find(r.docs, 'Deployment').spec.template.spec
    return { grace: pod.terminationGracePeriodSeconds as number, preStop: pod.containers[0].lifecycle?.preStop }
  }
  const defaults = await grace({})
  t.deepEqual(defaults.preStop, { exec: { command: ['sleep', '10'] } })
  t.true(defaults.grace > 10 + 30, `default grace ${defaults.grace}s > 10 s sleep + 30 s shutdown budget`)

  const longer = await grace({ config: { SHUTDOWN_TIMEOUT_MS: 120_500 }, preStopSleepSeconds: 15 })
  t.true(longer.grace > 15 + 121, `computed grace ${longer.grace}s follows SHUTDOWN_TIMEOUT_MS`)
  t.deepEqual(longer.preStop, { exec: { command: ['sleep', '15'] } })

  t.is((await grace({ terminationGracePeriodSeconds: 90 })).grace, 90, 'an explicit, long enough value is kept')

  const tooShort = await render({ terminationGracePeriodSeconds: 40 })
  t.not(tooShort.code, 0)
  t.regex(tooShort.stderr, /terminationGracePeriodSeconds \(40\) must exceed preStopSleepSeconds \(10\) \+ config.SHUTDOWN_TIMEOUT_MS \(30 s\) = 40/)
})

test('config changes roll the pods (checksum annotation)', async (t) => {
  const checksum = async (values: Record<string, unknown>) => find((await render(values)).docs, 'Deployment').spec.template.metadata.annotations['checksum/config'] as string
  const a = await checksum({})
  t.regex(a, /^[0-9a-f]{64}$/)
  t.is(await checksum({}), a, 'stable')
  t.not(await checksum({ config: { LOG_LEVEL: 'debug' } }), a)
  t.not(await checksum({ config: { TELEMETRY_RETENTION_DAYS: 7 } }), a)
})

test('replicas spread over nodes: preferred anti-affinity by default, required with the hard preset', async (t) => {
  const soft = find((await render({})).docs, 'Deployment').spec.template.spec.affinity.podAntiAffinity
  const term = soft.preferredDuringSchedulingIgnoredDuringExecution[0]
  t.is(term.podAffinityTerm.topologyKey, 'kubernetes.io/hostname')
  t.deepEqual(term.podAffinityTerm.labelSelector.matchLabels, { 'app.kubernetes.io/name': 'fleetgate', 'app.kubernetes.io/instance': 'fg' })
  const hard = find((await render({ podAntiAffinityPreset: 'hard' })).docs, 'Deployment').spec.template.spec.affinity.podAntiAffinity
  t.is(hard.requiredDuringSchedulingIgnoredDuringExecution[0].topologyKey, 'kubernetes.io/hostname')
  t.is(find((await render({ podAntiAffinityPreset: 'none' })).docs, 'Deployment').spec.template.spec.affinity, undefined)
})

test('Services: MQTT LoadBalancer on 1883 (and 8883 with TLS), HTTP ClusterIP on 8080; selectors match the pods', async (t) => {
  const { docs } = await render({ tls: { enabled: true, existingSecret: 'mqtt-tls' }, service: { mqtt: { externalTrafficPolicy: 'Local', loadBalancerSourceRanges: ['10.0.0.0/8'] } } })
  const podLabels = find(docs, 'Deployment').spec.template.metadata.labels
  const mqtt = find(docs, 'Service', '-mqtt').spec
  t.is(mqtt.type, 'LoadBalancer')
  t.is(mqtt.externalTrafficPolicy, 'Local')
  t.deepEqual(mqtt.loadBalancerSourceRanges, ['10.0.0.0/8'])
  t.deepEqual(mqtt.ports.map((p: Doc) => [p.name, p.port, p.targetPort]), [['mqtt', 1883, 'mqtt'], ['mqtts', 8883, 'mqtts']])
  const http = find(docs, 'Service', '-http').spec
  t.is(http.type, 'ClusterIP')
  t.deepEqual(http.ports.map((p: Doc) => [p.name, p.port, p.targetPort]), [['http', 8080, 'http']])
  for (const svc of [mqtt, http]) for (const [k, v] of Object.entries(svc.selector)) t.is(podLabels[k], v)

  const plain = find((await render({})).docs, 'Service', '-mqtt').spec
  t.deepEqual(plain.ports.map((p: Doc) => p.port), [1883], 'no 8883 without TLS')
  const internal = find((await render({ service: { mqtt: { type: 'ClusterIP', externalTrafficPolicy: 'Local' } } })).docs, 'Service', '-mqtt').spec
  t.is(internal.externalTrafficPolicy, undefined, 'a ClusterIP Service takes no externalTrafficPolicy')
})

test('TLS: the Secret is mounted read-only and the broker is told where the files are', async (t) => {
  const { docs } = await render({ tls: { enabled: true, existingSecret: 'mqtt-tls', clientCert: 'required', passwordAuth: false } })
  const c = brokerContainer(docs)
  t.deepEqual(c.ports.map((p: Doc) => p.containerPort), [1883, 8883, 8080])
  const mount = c.volumeMounts.find((m: Doc) => m.name === 'tls')
  t.like(mount, { mountPath: '/etc/fleetgate/tls', readOnly: true })
  t.like(find(docs, 'Deployment').spec.template.spec.volumes.find((v: Doc) => v.name === 'tls'), { secret: { secretName: 'mqtt-tls' } })
  t.like(find(docs, 'ConfigMap', '-fleetgate').data, {
    MQTT_TLS_ENABLED: 'true',
    MQTT_TLS_PORT: '8883',
    MQTT_TLS_KEY_FILE: '/etc/fleetgate/tls/tls.key',
    MQTT_TLS_CERT_FILE: '/etc/fleetgate/tls/tls.crt',
    MQTT_TLS_CA_FILE: '/etc/fleetgate/tls/ca.crt',
    MQTT_TLS_CLIENT_CERT: 'required',
    MQTT_TLS_PASSWORD_AUTH: 'false'
  })
  const noCa = find((await render({ tls: { enabled: true, existingSecret: 'mqtt-tls' } })).docs, 'ConfigMap', '-fleetgate').data
  t.false('MQTT_TLS_CA_FILE' in noCa, 'no CA file without client certificates')
})

test('Redis: an external URL, a URL from a Secret, or the in-chart Redis with its password', async (t) => {
  t.deepEqual(envOf(brokerContainer((await render({ ...REDIS, replicaCount: 2 })).docs)).get('REDIS_URL'), { name: 'REDIS_URL', value: 'redis://redis.example:6379' })
  t.deepEqual(envOf(brokerContainer((await render({ externalRedis: { existingSecret: 'redis-url', existingSecretKey: 'url' } })).docs)).get('REDIS_URL')?.valueFrom, { secretKeyRef: { name: 'redis-url', key: 'url' } })

  const inChart = brokerContainer((await render({ redis: { enabled: true } })).docs)
  const names = inChart.env.map((e: Doc) => e.name)
  t.true(names.indexOf('REDIS_PASSWORD') < names.indexOf('REDIS_URL'), 'the password is defined before the URL that refers to it')
  const env = envOf(inChart)
  t.deepEqual(env.get('REDIS_PASSWORD')?.valueFrom, { secretKeyRef: { name: 'fg-fleetgate-redis', key: 'redis-password' } })
  t.is(env.get('REDIS_URL')?.value, 'redis://:$(REDIS_PASSWORD)@fg-fleetgate-redis:6379')
  const own = envOf(brokerContainer((await render({ redis: { enabled: true, auth: { existingSecret: 'redis-pw', existingSecretPasswordKey: 'pw' } } })).docs))
  t.deepEqual(own.get('REDIS_PASSWORD')?.valueFrom, { secretKeyRef: { name: 'redis-pw', key: 'pw' } })
  const noAuth = envOf(brokerContainer((await render({ redis: { enabled: true, auth: { enabled: false } } })).docs))
  t.is(noAuth.get('REDIS_URL')?.value, 'redis://fg-fleetgate-redis:6379')
  t.false(noAuth.has('REDIS_PASSWORD'))
})

// ---- no chart dependency (the Bitnami Redis chart is gone) ----------------

test('no dependencies: nothing to download, and helm renders and packages the checkout offline', async (t) => {
  const chartYaml = parse(await readFile(join(chart, 'Chart.yaml'), 'utf8')) as Doc
  t.is(chartYaml.dependencies, undefined, 'Chart.yaml declares no dependencies')
  t.false(existsSync(join(chart, 'Chart.lock')), 'no Chart.lock')
  t.false(existsSync(join(chart, 'charts')), 'no charts/ (a stale one would be rendered as a subchart)')
  t.false((await readdir(chart)).some((f) => f.endsWith('.tgz')), 'no vendored chart archive')
  // helm() points HTTP(S)_PROXY at a closed port: these work with no network.
  const r = await render({})
  t.is(r.code, 0, r.stderr)
  t.true((await render({ redis: { enabled: true } })).code === 0)
  const dir = await mkdtemp(join(tmpdir(), 'fleetgate-package-'))
  try {
    const p = await helm(['package', chart, '--destination', dir])
    t.is(p.code, 0, p.stderr)
    t.deepEqual(await readdir(dir), ['fleetgate-0.1.0.tgz'])
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
})

const isRedisObject = (d: Doc): boolean => d.metadata?.labels?.['app.kubernetes.io/name'] === 'redis' || /redis/.test(String(d.metadata?.name))

test('default values: no Redis objects, no REDIS_URL', async (t) => {
  const { docs } = await render({})
  t.deepEqual(docs.filter(isRedisObject).map((d) => `${d.kind}/${d.metadata.name}`), [])
  t.false(docs.some((d) => d.kind === 'StatefulSet' || d.kind === 'Secret'), 'the chart makes no Secret of its own')
  t.false(envOf(brokerContainer(docs)).has('REDIS_URL'))
  // External Redis: still none of the in-chart objects.
  t.deepEqual((await render({ ...REDIS, replicaCount: 2 })).docs.filter(isRedisObject).map((d) => d.kind), [])
})

test('in-chart Redis: a StatefulSet of the official image with a password Secret, a PVC, Services, probes that check the answer', async (t) => {
  const { docs } = await render({ redis: { enabled: true } })
  const sts = find(docs, 'StatefulSet')
  t.is(sts.metadata.name, 'fg-fleetgate-redis')
  t.is(sts.spec.replicas, 1)
  const pod = sts.spec.template.spec
  const c = pod.containers[0]
  t.is(c.image, 'docker.io/library/redis:7.4')
  t.deepEqual(c.args, ['redis-server', '/etc/redis/redis.conf', '--requirepass', '$(REDIS_PASSWORD)'])
  const env = envOf(c)
  t.deepEqual(env.get('REDIS_PASSWORD')?.valueFrom, { secretKeyRef: { name: 'fg-fleetgate-redis', key: 'redis-password' } })
  t.deepEqual(env.get('REDISCLI_AUTH')?.valueFrom, env.get('REDIS_PASSWORD')?.valueFrom, 'the probes authenticate without -a')
  t.deepEqual(c.ports, [{ name: 'redis', containerPort: 6379, protocol: 'TCP' }])
  for (const probe of [c.readinessProbe, c.livenessProbe]) {
    const cmd = probe.exec.command.join(' ')
    t.regex(cmd, /redis-cli -h 127\.0\.0\.1 -p 6379 ping \| grep -q/, 'redis-cli exits 0 on NOAUTH: the answer itself is checked')
    t.notRegex(cmd, / -a /, 'no password on a command line')
  }
  t.like(c.resources, { requests: { cpu: '100m', memory: '128Mi' }, limits: { memory: '512Mi' } })

  // The password: generated, base64, in a Secret — never in the ConfigMap.
  const secret = find(docs, 'Secret')
  t.is(secret.metadata.name, 'fg-fleetgate-redis')
  const password = Buffer.from(secret.data['redis-password'], 'base64').toString()
  t.regex(password, /^[A-Za-z0-9]{32}$/)
  const conf = find(docs, 'ConfigMap', '-redis').data['redis.conf'] as string
  t.false(conf.includes(password))
  t.regex(conf, /^maxmemory-policy noeviction$/m, 'sessions and retained messages are never evicted')
  t.regex(conf, /^appendonly yes$/m)
  t.regex(conf, /^dir \/data$/m)
  t.notRegex(conf, /protected-mode/)
  t.regex(sts.spec.template.metadata.annotations['checksum/config'], /^[0-9a-f]{64}$/, 'a changed redis.conf restarts Redis')

  // Persistence: a claim template, mounted at /data.
  t.like(sts.spec.volumeClaimTemplates[0], { metadata: { name: 'data' }, spec: { accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '1Gi' } } } })
  t.is(sts.spec.volumeClaimTemplates[0].spec.storageClassName, undefined, 'the cluster default StorageClass')
  t.like(c.volumeMounts.find((m: Doc) => m.name === 'data'), { mountPath: '/data' })
  t.false(pod.volumes.some((v: Doc) => v.name === 'data'))

  // Services: a ClusterIP one (REDIS_URL's host) and the headless governing one.
  const svc = docs.find((d) => d.kind === 'Service' && d.metadata.name === 'fg-fleetgate-redis')!
  t.is(svc.spec.type, 'ClusterIP')
  t.deepEqual(svc.spec.ports, [{ name: 'redis', port: 6379, targetPort: 'redis', protocol: 'TCP' }])
  const headless = docs.find((d) => d.kind === 'Service' && d.metadata.name === 'fg-fleetgate-redis-headless')!
  t.is(headless.spec.clusterIP, 'None')
  t.is(sts.spec.serviceName, headless.metadata.name)
  for (const s of [svc, headless]) t.deepEqual(s.spec.selector, sts.spec.selector.matchLabels)
  t.deepEqual(sts.spec.selector.matchLabels, { 'app.kubernetes.io/name': 'redis', 'app.kubernetes.io/instance': 'fg', 'app.kubernetes.io/component': 'redis' })

  // Persistence off, a size and class, an existing Secret, a given password.
  const emptyDir = find((await render({ redis: { enabled: true, persistence: { enabled: false } } })).docs, 'StatefulSet').spec
  t.is(emptyDir.volumeClaimTemplates, undefined)
  t.deepEqual(emptyDir.template.spec.volumes.find((v: Doc) => v.name === 'data'), { name: 'data', emptyDir: {} })
  const sized = find((await render({ redis: { enabled: true, persistence: { size: '8Gi', storageClass: 'fast-ssd' } } })).docs, 'StatefulSet').spec.volumeClaimTemplates[0].spec
  t.like(sized, { storageClassName: 'fast-ssd', resources: { requests: { storage: '8Gi' } } })
  t.is(find((await render({ redis: { enabled: true, persistence: { storageClass: '-' } } })).docs, 'StatefulSet').spec.volumeClaimTemplates[0].spec.storageClassName, '')
  const existing = await render({ redis: { enabled: true, auth: { existingSecret: 'redis-pw', existingSecretPasswordKey: 'pw' } } })
  t.false(existing.docs.some((d) => d.kind === 'Secret'), 'an existing Secret: the chart makes none')
  t.deepEqual(envOf(find(existing.docs, 'StatefulSet').spec.template.spec.containers[0]).get('REDIS_PASSWORD')?.valueFrom, { secretKeyRef: { name: 'redis-pw', key: 'pw' } })
  const given = find((await render({ redis: { enabled: true, auth: { password: 's3cret-Pass_word.1' } } })).docs, 'Secret')
  t.is(Buffer.from(given.data['redis-password'], 'base64').toString(), 's3cret-Pass_word.1')
  const extra = find((await render({ redis: { enabled: true, extraConfig: 'maxmemory 400mb\nmaxclients 2000\n' } })).docs, 'ConfigMap', '-redis').data['redis.conf'] as string
  t.regex(extra, /^maxmemory 400mb\nmaxclients 2000\n$/m)

  // No password: no Secret, no --requirepass, and protected mode off (it
  // would refuse every client off loopback).
  const open = await render({ redis: { enabled: true, auth: { enabled: false } } })
  t.false(open.docs.some((d) => d.kind === 'Secret'))
  const openC = find(open.docs, 'StatefulSet').spec.template.spec.containers[0]
  t.deepEqual(openC.args, ['redis-server', '/etc/redis/redis.conf'])
  t.is(openC.env, undefined)
  t.regex(find(open.docs, 'ConfigMap', '-redis').data['redis.conf'], /^protected-mode no$/m)
})

test('in-chart Redis runs non-root with a read-only root file system', async (t) => {
  const pod = find((await render({ redis: { enabled: true } })).docs, 'StatefulSet').spec.template.spec
  t.like(pod.securityContext, { runAsNonRoot: true, runAsUser: 999, fsGroup: 999, seccompProfile: { type: 'RuntimeDefault' } })
  t.false(pod.automountServiceAccountToken)
  t.is(pod.serviceAccountName, undefined, 'not the broker\'s ServiceAccount (it may carry a cloud IAM role)')
  const c = pod.containers[0]
  t.like(c.securityContext, { runAsNonRoot: true, allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, privileged: false })
  t.deepEqual(c.securityContext.capabilities.drop, ['ALL'])
  t.like(c.volumeMounts.find((m: Doc) => m.name === 'config'), { mountPath: '/etc/redis', readOnly: true })
})

test('only broker pods match the broker\'s Services, PodDisruptionBudget and anti-affinity', async (t) => {
  const { docs } = await render({ redis: { enabled: true }, replicaCount: 2, podAntiAffinityPreset: 'hard' })
  const podLabels = (d: Doc): Record<string, string> => d.kind === 'Pod' ? d.metadata.labels : d.spec.template.metadata.labels
  const pods = docs.filter((d) => ['Deployment', 'StatefulSet', 'Job', 'Pod'].includes(d.kind)).map((d) => ({ kind: d.kind, labels: podLabels(d) }))
  t.deepEqual(pods.map((p) => p.kind).sort(), ['Deployment', 'Job', 'Pod', 'StatefulSet'])
  const selects = (selector: Record<string, string>, labels: Record<string, string>) => Object.entries(selector).every(([k, v]) => labels[k] === v)
  const deployment = find(docs, 'Deployment')
  const selectors: Array<[string, Record<string, string>]> = [
    ['Service mqtt', find(docs, 'Service', '-mqtt').spec.selector],
    ['Service http', find(docs, 'Service', '-http').spec.selector],
    ['PodDisruptionBudget', find(docs, 'PodDisruptionBudget').spec.selector.matchLabels],
    ['anti-affinity', deployment.spec.template.spec.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].labelSelector.matchLabels],
    ['Deployment', deployment.spec.selector.matchLabels]
  ]
  for (const [what, selector] of selectors) {
    for (const p of pods) t.is(selects(selector, p.labels), p.kind === 'Deployment', `${what} ${p.kind === 'Deployment' ? 'selects' : 'must not select'} the ${p.kind}'s pods`)
  }
  const redisSvc = docs.find((d) => d.kind === 'Service' && d.metadata.name === 'fg-fleetgate-redis')!
  for (const p of pods) t.is(selects(redisSvc.spec.selector, p.labels), p.kind === 'StatefulSet', `the Redis Service and the ${p.kind}`)
})

// ---- helm test -------------------------------------------------------------

const testPod = (docs: Doc[]): Doc => find(docs, 'Pod', '-test')

test('helm test: a hook pod of the broker image checks /readyz and a CONNACK from the MQTT Service', async (t) => {
  const { docs } = await render({})
  const pod = testPod(docs)
  t.like(pod.metadata.annotations, { 'helm.sh/hook': 'test', 'helm.sh/hook-delete-policy': 'before-hook-creation,hook-succeeded' })
  t.is(pod.spec.restartPolicy, 'Never')
  t.true(pod.spec.activeDeadlineSeconds > 60)
  t.false(pod.spec.automountServiceAccountToken)
  t.is(pod.spec.serviceAccountName, undefined, 'not the broker\'s ServiceAccount')
  const c = pod.spec.containers[0]
  t.is(c.image, brokerContainer(docs).image, 'the broker image: nothing else to pull')
  t.is(c.command, undefined, 'the image entry point (tini) runs it')
  t.deepEqual(c.args.slice(0, 2), ['node', '-e'])
  t.is(c.args[2], await readFile(join(chart, 'files', 'connection-test.js'), 'utf8'), 'the script is files/connection-test.js, as is')
  t.like(c.securityContext, { runAsNonRoot: true, readOnlyRootFilesystem: true, allowPrivilegeEscalation: false })
  const env = Object.fromEntries((c.env as Doc[]).map((e) => [e.name, e.value]))
  t.deepEqual(env, { READYZ_URL: 'http://fg-fleetgate-http.iot.svc:8080/readyz', DEADLINE_SECONDS: '60', MQTT_TRANSPORT: 'tcp', MQTT_HOST: 'fg-fleetgate-mqtt.iot.svc', MQTT_PORT: '1883' })
  // The addresses are those of the chart's own Services.
  t.is(find(docs, 'Service', '-http').spec.ports[0].port, 8080)
  t.is(find(docs, 'Service', '-mqtt').metadata.name, 'fg-fleetgate-mqtt')

  t.false((await render({ tests: { enabled: false } })).docs.some((d) => d.kind === 'Pod'))
  const annotated = testPod((await render({ tests: { podAnnotations: { 'sidecar.istio.io/inject': 'false' } } })).docs)
  t.is(annotated.metadata.annotations['sidecar.istio.io/inject'], 'false')
  t.is(annotated.metadata.annotations['helm.sh/hook'], 'test')
})

test('helm test: the MQTT check uses the first transport a client without a certificate can reach', async (t) => {
  const transport = async (values: Record<string, unknown>) => Object.fromEntries((testPod((await render(values)).docs).spec.containers[0].env as Doc[]).filter((e) => e.name.startsWith('MQTT_')).map((e) => [e.name, e.value]))
  const tls = { enabled: true, existingSecret: 'mqtt-tls' }
  t.deepEqual(await transport({ tls }), { MQTT_TRANSPORT: 'tcp', MQTT_HOST: 'fg-fleetgate-mqtt.iot.svc', MQTT_PORT: '1883' })
  t.deepEqual(await transport({ tls, config: { MQTT_TCP_ENABLED: false } }), { MQTT_TRANSPORT: 'tls', MQTT_HOST: 'fg-fleetgate-mqtt.iot.svc', MQTT_PORT: '8883' })
  t.deepEqual(await transport({ config: { MQTT_TCP_ENABLED: false } }), { MQTT_TRANSPORT: 'ws', MQTT_WS_URL: 'ws://fg-fleetgate-http.iot.svc:8080/mqtt' })
  t.deepEqual(await transport({ tls: { ...tls, clientCert: 'required', passwordAuth: false }, config: { MQTT_TCP_ENABLED: false } }), { MQTT_TRANSPORT: 'ws', MQTT_WS_URL: 'ws://fg-fleetgate-http.iot.svc:8080/mqtt' })
  t.deepEqual(await transport({ tls: { ...tls, clientCert: 'required' }, config: { MQTT_TCP_ENABLED: false, MQTT_WS_ENABLED: false } }), { MQTT_TRANSPORT: 'tcp-open', MQTT_HOST: 'fg-fleetgate-mqtt.iot.svc', MQTT_PORT: '8883' })
})

// ---- PrometheusRule (the alert contents: test/helm/alerts.test.ts) --------

test('PrometheusRule: off by default; when enabled, valid, labelled, in its namespace, with a runbook link on every alert', async (t) => {
  t.false((await render({})).docs.some((d) => d.kind === 'PrometheusRule'), 'off by default (needs the CRD)')
  const { docs } = await render({ metrics: { prometheusRule: { enabled: true, namespace: 'monitoring', labels: { release: 'prom' }, alertLabels: { team: 'iot' } } } })
  const rule = find(docs, 'PrometheusRule')
  t.deepEqual(validateAll([rule]), [])
  t.is(rule.metadata.namespace, 'monitoring')
  t.is(rule.metadata.labels.release, 'prom')
  const rules = rule.spec.groups.flatMap((g: Doc) => g.rules) as Doc[]
  t.true(rules.length >= 10)
  for (const r of rules) {
    t.regex(r.alert, /^Fleetgate[A-Za-z]+$/)
    t.true(['warning', 'critical'].includes(r.labels.severity), `${r.alert} severity`)
    t.is(r.labels.team, 'iot')
    t.truthy(r.annotations.summary)
    t.truthy(r.annotations.description)
    t.is(r.annotations.runbook_url, `helm/fleetgate/README.md#${(r.alert as string).toLowerCase()}`)
  }
  const fewer = find((await render({ metrics: { prometheusRule: { enabled: true, disabledAlerts: ['FleetgateNotReady'], runbookBaseUrl: 'https://wiki.example.com/fleetgate' } } })).docs, 'PrometheusRule')
  const fewerRules = fewer.spec.groups[0].rules as Doc[]
  t.is(fewerRules.length, rules.length - 1)
  t.false(fewerRules.some((r) => r.alert === 'FleetgateNotReady'))
  t.is(fewerRules[0]!.annotations.runbook_url, `https://wiki.example.com/fleetgate#${(fewerRules[0]!.alert as string).toLowerCase()}`)
})

test('migrations: a pre-install/pre-upgrade hook Job running migrate-cli with DATABASE_URL from the Secret', async (t) => {
  const { docs } = await render({})
  const job = find(docs, 'Job')
  t.like(job.metadata.annotations, {
    'helm.sh/hook': 'pre-install,pre-upgrade',
    'helm.sh/hook-delete-policy': 'before-hook-creation,hook-succeeded'
  })
  t.regex(job.metadata.annotations['helm.sh/hook-weight'], /^-?\d+$/)
  const pkg = JSON.parse(await readFile('package.json', 'utf8')) as { scripts: Record<string, string> }
  const c = job.spec.template.spec.containers[0]
  t.true(pkg.scripts.migrate!.endsWith(c.command.join(' ')), `${c.command.join(' ')} is what npm run migrate runs`)
  t.deepEqual(envOf(c).get('DATABASE_URL')?.valueFrom, { secretKeyRef: { name: 'fleetgate-db', key: 'DATABASE_URL' } })
  t.is(job.spec.template.spec.restartPolicy, 'Never')
  // It runs before the release's objects exist: nothing of the chart's own.
  t.is(c.envFrom, undefined)
  t.is(job.spec.template.spec.serviceAccountName, undefined)
})

test('autoscaling: HPA on CPU and connections per pod, no fixed replicas; PDB', async (t) => {
  const { docs } = await render({ ...REDIS, autoscaling: { enabled: true, minReplicas: 3, maxReplicas: 12, connections: { enabled: true, averageValue: '15000' } } })
  t.is(find(docs, 'Deployment').spec.replicas, undefined, 'the HPA owns the replica count')
  const hpa = find(docs, 'HorizontalPodAutoscaler').spec
  t.like(hpa, { minReplicas: 3, maxReplicas: 12, scaleTargetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name: 'fg-fleetgate' } })
  t.like(hpa.metrics[0], { type: 'Resource', resource: { name: 'cpu', target: { type: 'Utilization', averageUtilization: 70 } } })
  t.like(hpa.metrics[1], { type: 'Pods', pods: { metric: { name: 'fleetgate_mqtt_connected_clients' }, target: { type: 'AverageValue', averageValue: '15000' } } })
  // The metric the HPA asks for is one the broker exports.
  const metricsSource = await readFile('broker/metrics.ts', 'utf8')
  t.true(metricsSource.includes(`name: '${hpa.metrics[1].pods.metric.name as string}'`))
  t.like(find(docs, 'PodDisruptionBudget').spec, { maxUnavailable: 1, selector: { matchLabels: { 'app.kubernetes.io/instance': 'fg' } } })
})

test('ServiceMonitor scrapes /metrics on the HTTP Service only', async (t) => {
  const { docs } = await render({ metrics: { serviceMonitor: { enabled: true, interval: '15s', labels: { release: 'prom' } } } })
  const sm = find(docs, 'ServiceMonitor')
  t.is(sm.metadata.labels.release, 'prom')
  t.deepEqual(sm.spec.endpoints, [{ port: 'http', path: '/metrics', interval: '15s', scrapeTimeout: '10s' }])
  const http = find(docs, 'Service', '-http')
  const mqtt = find(docs, 'Service', '-mqtt')
  const matches = (svc: Doc) => Object.entries(sm.spec.selector.matchLabels as Record<string, string>).every(([k, v]) => svc.metadata.labels[k] === v)
  t.true(matches(http))
  t.false(matches(mqtt))
  t.true(http.spec.ports.some((p: Doc) => p.name === 'http'))
  t.false(docs.some((d) => d.kind === 'ServiceMonitor' && d !== sm))
  t.false((await render({})).docs.some((d) => d.kind === 'ServiceMonitor'), 'off by default (needs the CRD)')
})

test('Ingress routes to the HTTP Service', async (t) => {
  const { docs } = await render(VALUE_SETS.ingress!)
  const ing = find(docs, 'Ingress').spec
  t.is(ing.ingressClassName, 'nginx')
  t.deepEqual(ing.tls, [{ secretName: 'fleet-tls', hosts: ['fleet.example.com'] }])
  t.deepEqual(ing.rules[0], { host: 'fleet.example.com', http: { paths: [{ path: '/', pathType: 'Prefix', backend: { service: { name: 'fg-fleetgate-http', port: { name: 'http' } } } }] } })
})

test('the Grafana dashboard ships as a ConfigMap labelled for the Grafana sidecar', async (t) => {
  const cm = find((await render({})).docs, 'ConfigMap', '-dashboard')
  t.is(cm.metadata.labels.grafana_dashboard, '1')
  const file = await readFile('helm/fleetgate/dashboards/fleetgate.json', 'utf8')
  t.deepEqual(JSON.parse(cm.data['fleetgate.json']), JSON.parse(file))
})

test('NOTES tell how to reach MQTT and the API and how to create a device', async (t) => {
  const r = await helm(['install', 'fg', chart, '--dry-run=client', '--namespace', 'iot', '--set', 'existingSecret.name=fleetgate-db'])
  t.is(r.code, 0, r.stderr)
  const notes = r.stdout.slice(r.stdout.indexOf('NOTES:'))
  t.regex(notes, /mqtt:\/\/\$MQTT_HOST:1883/)
  t.regex(notes, /kubectl get svc -n iot fg-fleetgate-mqtt/)
  t.regex(notes, /port-forward -n iot svc\/fg-fleetgate-http 8080:8080/)
  t.regex(notes, /curl -s -X POST \$API\/v1\/devices -H "authorization: Bearer \$ADMIN_TOKEN"/)
  t.regex(notes, /kubectl get secret -n iot fleetgate-db -o jsonpath='\{\.data\.ADMIN_TOKEN\}'/)
})

const REJECTED: Array<[string, Record<string, unknown>, RegExp]> = [
  ['no Secret name', { existingSecret: { name: '' } }, /existingSecret\.name is required: create a Secret holding DATABASE_URL/],
  ['replicaCount 0', { replicaCount: 0 }, /at '\/replicaCount': minimum: got 0, want 1/],
  ['an unknown Service type', { service: { mqtt: { type: 'External' } } }, /at '\/service\/mqtt\/type': value must be one of 'LoadBalancer', 'NodePort', 'ClusterIP'/],
  ['a port out of range', { containerPorts: { mqtt: 70000 } }, /at '\/containerPorts\/mqtt': maximum: got 70,000, want 65,535/],
  ['a node port outside the node port range', { service: { mqtt: { type: 'NodePort', nodePorts: { mqtt: 1883 } } } }, /at '\/service\/mqtt\/nodePorts\/mqtt': minimum: got 1,883, want 30,000/],
  ['a setting out of the broker\'s bounds', { config: { INGEST_WRITERS: 100 } }, /at '\/config\/INGEST_WRITERS': maximum: got 100, want 64/],
  ['a setting of the wrong type', { config: { TELEMETRY_RETENTION_DAYS: 'thirty' } }, /at '\/config\/TELEMETRY_RETENTION_DAYS': got string, want integer/],
  ['an unknown log level', { config: { LOG_LEVEL: 'verbose' } }, /at '\/config\/LOG_LEVEL': value must be one of 'fatal'/],
  ['a misspelt setting', { config: { INGEST_WRITER: 2 } }, /additional properties 'INGEST_WRITER' not allowed/],
  ['a misspelt top-level value', { replicas: 2 }, /additional properties 'replicas' not allowed/],
  ['an unknown client-certificate mode', { tls: { clientCert: 'maybe' } }, /at '\/tls\/clientCert': value must be one of 'off', 'optional', 'required'/],
  ['a Redis URL without a scheme', { externalRedis: { url: 'redis.example:6379' } }, /at '\/externalRedis\/url'/],
  ['TLS without its Secret', { tls: { enabled: true } }, /tls\.enabled=true needs tls\.existingSecret/],
  ['certificate-only auth without required client certificates', { tls: { enabled: true, existingSecret: 'x', passwordAuth: false } }, /tls\.passwordAuth=false needs tls\.clientCert=required/],
  ['two replicas without Redis', { replicaCount: 2 }, /more than one replica .* needs Redis/],
  ['autoscaling without Redis', { autoscaling: { enabled: true } }, /more than one replica .* needs Redis/],
  ['two Redis sources', { redis: { enabled: true }, ...REDIS }, /redis\.enabled and externalRedis are both set/],
  ['a Redis password given twice', { redis: { enabled: true, auth: { password: 'abc', existingSecret: 'redis-pw' } } }, /redis\.auth\.password and redis\.auth\.existingSecret are both set/],
  ['a Redis password that cannot go into a URL as is', { redis: { enabled: true, auth: { password: 'p@ss/word' } } }, /at '\/redis\/auth\/password'/],
  ['a Bitnami Redis value', { redis: { enabled: true, architecture: 'replication' } }, /additional properties 'architecture' not allowed/],
  ['an unknown alert to disable', { metrics: { prometheusRule: { disabledAlerts: ['FleetgateTypo'] } } }, /at '\/metrics\/prometheusRule\/disabledAlerts\/0': value must be one of/],
  ['a pool no larger than the writers', { config: { DB_POOL_MAX: 3, INGEST_WRITERS: 3 } }, /config\.DB_POOL_MAX \(3\) must be greater than config\.INGEST_WRITERS \(3\)/],
  ['both PDB bounds', { pdb: { minAvailable: 1, maxUnavailable: 1 } }, /pdb\.minAvailable and pdb\.maxUnavailable are both set/],
  ['maxReplicas below minReplicas', { ...REDIS, autoscaling: { enabled: true, minReplicas: 5, maxReplicas: 2 } }, /autoscaling\.maxReplicas \(2\) must be at least autoscaling\.minReplicas \(5\)/]
]

for (const [name, values, message] of REJECTED) {
  test(`rejected with a readable message: ${name}`, async (t) => {
    const r = await render(values)
    t.not(r.code, 0)
    t.regex(r.stderr, message)
  })
}

// ---- values.yaml, values.schema.json and broker/config.ts stay in step ----

async function chartFiles () {
  const valuesText = await readFile('helm/fleetgate/values.yaml', 'utf8')
  return {
    valuesText,
    values: parse(valuesText) as Doc,
    schema: JSON.parse(await readFile('helm/fleetgate/values.schema.json', 'utf8')) as Doc,
    readme: await readFile('helm/fleetgate/README.md', 'utf8')
  }
}

const isPlainObject = (v: unknown): v is Doc => typeof v === 'object' && v !== null && !Array.isArray(v)

test('every value has a `## @param` line and a row in the chart README, and every @param names a value', async (t) => {
  const { valuesText, values, readme } = await chartFiles()
  const params = [...valuesText.matchAll(/^\s*## @param (\S+) \S/gm)].map((m) => m[1]!)
  t.true(params.length > 100)
  const documented = new Set(params)
  const undocumented: string[] = []
  const walk = (node: Doc, prefix: string) => {
    for (const [k, v] of Object.entries(node)) {
      const path = prefix + k
      if (documented.has(path)) continue
      if (isPlainObject(v) && Object.keys(v).length > 0) walk(v, path + '.')
      else undocumented.push(path)
    }
  }
  walk(values, '')
  t.deepEqual(undocumented, [], 'values without a ## @param line')
  for (const p of params) {
    let node: unknown = values
    for (const part of p.split('.')) node = isPlainObject(node) && part in node ? node[part] : Symbol.for('missing')
    t.not(node, Symbol.for('missing'), `@param ${p} names a value`)
    t.true(readme.includes('`' + p + '`'), `${p} is in helm/fleetgate/README.md`)
  }
})

test('the schema describes every value, and the defaults satisfy it', async (t) => {
  const { values, schema } = await chartFiles()
  const missing: string[] = []
  const walk = (node: Doc, s: Doc, prefix: string) => {
    for (const [k, v] of Object.entries(node)) {
      const sub = s.properties?.[k] as Doc | undefined
      if (!sub) { if (s.additionalProperties === false || !s.additionalProperties) missing.push(prefix + k); continue }
      if (isPlainObject(v) && sub.properties) walk(v, sub, `${prefix}${k}.`)
    }
  }
  walk(values, schema, '')
  t.deepEqual(missing, [])
  t.is(schema.$schema, 'http://json-schema.org/draft-07/schema#')
})

test('config: the broker\'s own settings, names, defaults and bounds (broker/config.ts)', async (t) => {
  const { values, schema } = await chartFiles()
  const config = values.config as Doc
  const configSchema = schema.properties.config.properties as Record<string, Doc>
  const broker = ConfigSchema.properties as Record<string, Doc>
  for (const key of Object.keys(broker)) {
    t.true(CHART_MANAGED.has(key) !== (key in config), `${key}: in values.config, or set by the chart — exactly one (add new broker settings to values.yaml, values.schema.json and the chart README)`)
  }
  for (const [key, value] of Object.entries(config)) {
    const b = broker[key]
    if (!b) { t.fail(`config.${key} is not a setting of broker/config.ts`); continue }
    t.deepEqual(value, b.default, `config.${key} default`)
    const s = configSchema[key]!
    t.truthy(s, `config.${key} in values.schema.json`)
    if (b.type === 'integer') t.like(s, { type: 'integer', minimum: b.minimum, maximum: b.maximum }, `config.${key} bounds`)
    else if (b.type === 'boolean') t.is(s.type, 'boolean')
    else if (b.anyOf) t.deepEqual(s.enum, (b.anyOf as Doc[]).map((x) => x.const), `config.${key} choices`)
    else t.is(s.type, 'string')
  }
})

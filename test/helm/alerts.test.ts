// The chart's alerts (templates/_alerts.tpl, rendered by
// templates/prometheusrule.yaml): rendered with helm, checked by Prometheus'
// own promtool (`check rules`: the PromQL parses, the templates in the
// annotations are valid) and unit-tested with `promtool test rules`
// (alerts.promtool-test.yaml: input series in, expected alerts with their
// labels and annotations out). promtool is installed when missing (Debian
// package prometheus, as run-tests.ts does for redis-server) or the tests fail
// saying how to get it: nothing is skipped.
import test from 'ava'
import { copyFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parse, stringify } from 'yaml'
import { PrometheusRule } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1'
import { CHART, promtoolPath, renderChart, runPromtool, type Doc } from '../helpers/helm.js'

const UNIT_TESTS = join('test', 'helm', 'alerts.promtool-test.yaml')

async function renderRule (prometheusRule: Doc = {}): Promise<Doc> {
  const r = await renderChart(CHART, { existingSecret: { name: 'fleetgate-db' }, metrics: { prometheusRule: { enabled: true, ...prometheusRule } } })
  if (r.code !== 0) throw new Error(r.stderr)
  const rule = r.docs.find((d) => d.kind === 'PrometheusRule')
  if (!rule) throw new Error('no PrometheusRule rendered')
  return rule
}

const rulesOf = (rule: Doc): Doc[] => (rule.spec.groups as Doc[]).flatMap((g) => g.rules as Doc[])

let dir: string
test.before(async (t) => {
  // An install of the Debian package can take a while on a cold machine.
  t.timeout(10 * 60_000)
  await promtoolPath()
  dir = await mkdtemp(join(tmpdir(), 'fleetgate-alerts-'))
  const rule = await renderRule()
  // The rule file promtool reads is the PrometheusRule's spec: its groups.
  await writeFile(join(dir, 'rules.yaml'), stringify({ groups: rule.spec.groups }))
  await copyFile(UNIT_TESTS, join(dir, 'tests.yaml'))
})
test.after.always(async () => { if (dir) await rm(dir, { recursive: true, force: true }) })

test('the PrometheusRule matches the Prometheus Operator\'s schema', async (t) => {
  const rule = await renderRule()
  t.notThrows(() => new PrometheusRule(rule as never).validate())
  t.is(rule.apiVersion, 'monitoring.coreos.com/v1')
})

test('promtool check rules: every expression and annotation template is valid', async (t) => {
  const r = await runPromtool(['check', 'rules', join(dir, 'rules.yaml')])
  t.is(r.code, 0, r.stdout + r.stderr)
  const count = rulesOf(await renderRule()).length
  t.regex(r.stdout, new RegExp(`SUCCESS: ${count} rules found`))
})

test('promtool test rules: the alerts fire on the series they are for, and only then', async (t) => {
  const r = await runPromtool(['test', 'rules', 'tests.yaml'], dir)
  t.is(r.code, 0, r.stdout + r.stderr)
  t.regex(r.stdout, /SUCCESS/)
})

test('the unit tests cover the alerts that guard stored data, and every alert has one', async (t) => {
  const tests = parse(await readFile(UNIT_TESTS, 'utf8')) as Doc
  const tested = new Set((tests.tests as Doc[]).flatMap((g) => (g.alert_rule_test as Doc[]).filter((a) => (a.exp_alerts as Doc[]).length > 0).map((a) => a.alertname as string)))
  const alerts = rulesOf(await renderRule()).map((r) => r.alert as string)
  t.deepEqual(alerts.filter((a) => !tested.has(a)), [], 'alerts without a firing case in alerts.promtool-test.yaml')
  for (const a of ['FleetgateIngestQueueSaturated', 'FleetgateIngestStoreFaults']) t.true(tested.has(a))
})

test('a unit test that expects the wrong thing fails (promtool is really checking)', async (t) => {
  const tests = parse(await readFile(UNIT_TESTS, 'utf8')) as Doc
  // The queue at 87.5 % for 10 minutes, but expected not to alert.
  const first = (tests.tests as Doc[])[0]!
  first.alert_rule_test = [{ eval_time: '10m', alertname: 'FleetgateIngestQueueSaturated', exp_alerts: [] }]
  tests.tests = [first]
  await writeFile(join(dir, 'wrong.yaml'), stringify(tests))
  const r = await runPromtool(['test', 'rules', 'wrong.yaml'], dir)
  t.not(r.code, 0)
  t.regex(r.stdout + r.stderr, /FAILED[\s\S]*FleetgateIngestQueueSaturated/)
})

test('every fleetgate_* series an alert uses is one the broker exports (broker/metrics.ts)', async (t) => {
  const source = await readFile('broker/metrics.ts', 'utf8')
  const exported = new Set([...source.matchAll(/(?:name: |gaugeFrom\()'(fleetgate_[a-z_]+)'/g)].map((m) => m[1]!))
  t.true(exported.size > 20)
  const used = new Set(rulesOf(await renderRule()).flatMap((r) => [...String(r.expr).matchAll(/\b(fleetgate_[a-z_]+)\b/g)].map((m) => m[1]!)))
  t.true(used.size >= 10)
  t.deepEqual([...used].filter((name) => !exported.has(name)), [])
  // …and the others are the two documented exceptions.
  const foreign = new Set(rulesOf(await renderRule()).flatMap((r) => [...String(r.expr).matchAll(/\b([a-z_]+)\{/g)].map((m) => m[1]!)).filter((n) => !n.startsWith('fleetgate_')))
  t.deepEqual([...foreign].sort(), ['kube_pod_owner', 'kube_pod_status_ready', 'up'])
})

test('each alert: a severity, a summary and description, and a runbook section in the chart README', async (t) => {
  const readme = await readFile('helm/fleetgate/README.md', 'utf8')
  const schema = JSON.parse(await readFile('helm/fleetgate/values.schema.json', 'utf8')) as Doc
  const rules = rulesOf(await renderRule())
  for (const r of rules) {
    t.true(['warning', 'critical'].includes(r.labels.severity), `${r.alert as string}: severity`)
    t.true(String(r.annotations.summary).length > 10)
    t.true(String(r.annotations.description).length > 40)
    // GitHub's heading anchor of "### FleetgateX" is "#fleetgatex".
    t.regex(readme, new RegExp(`^### ${r.alert as string}$`, 'm'), `${r.alert as string}: runbook section`)
    const section = readme.slice(readme.indexOf(`### ${r.alert as string}\n`)).split(/\n### /)[0]!
    for (const part of ['**Means**', '**Check**', '**Do**']) t.true(section.includes(part), `${r.alert as string}: ${part}`)
    t.true(section.includes(`*${r.labels.severity as string}*`), `${r.alert as string}: the README gives its severity`)
  }
  // disabledAlerts accepts exactly these names.
  t.deepEqual([...schema.properties.metrics.properties.prometheusRule.properties.disabledAlerts.items.enum].sort(), rules.map((r) => r.alert).sort())
})

test('the selector scopes the fleetgate series to this release; thresholds and INGEST_STALL_MS come from the values', async (t) => {
  const rules = rulesOf(await renderRule())
  for (const r of rules.filter((x) => String(x.expr).includes('fleetgate_'))) {
    for (const m of String(r.expr).matchAll(/fleetgate_[a-z_]+(\{[^}]*\})?/g)) t.true(m[1]?.startsWith('{job="fg-fleetgate-http",namespace="iot"'), `${r.alert as string}: ${m[0]}`)
  }
  const byName = (rs: Doc[], name: string): string => String(rs.find((r) => r.alert === name)!.expr)
  t.regex(byName(rules, 'FleetgateIngestWriteStalled'), /> 10$/)
  const custom = rulesOf(await renderRule({ selector: 'service="fleetgate",env="prod"', thresholds: { queueSaturationRatio: 0.95 } }))
  t.regex(byName(custom, 'FleetgateIngestQueueSaturated'), /^fleetgate_ingest_queue_rows\{service="fleetgate",env="prod"\} \/ fleetgate_ingest_queue_capacity_rows\{service="fleetgate",env="prod"\} > 0\.95$/)
  const r = await renderChart(CHART, { existingSecret: { name: 'fleetgate-db' }, config: { INGEST_STALL_MS: 2500 }, metrics: { prometheusRule: { enabled: true } } })
  t.regex(byName(rulesOf(r.docs.find((d) => d.kind === 'PrometheusRule')!), 'FleetgateIngestWriteStalled'), /> 2\.5$/)
})

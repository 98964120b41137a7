// The OpenAPI document passes an OpenAPI linter with zero errors (issue 13,
// "API quality"): Redocly CLI with the repository's redocly.yaml (the
// `recommended` ruleset, the requirements raised to errors) over
// /openapi.json as a started broker serves it. Also: errors are documented
// as application/problem+json with the stable codes, and every code the
// sources can answer with is in that enum.
import { execFile } from 'node:child_process'
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import test from 'ava'
import { startTestBroker, api, type TestBroker } from '../helpers/broker.js'
import { PROBLEM_CODES } from '../../devices/problem-codes.js'

const root = fileURLToPath(new URL('../..', import.meta.url))

let broker: TestBroker
test.before(async () => { broker = await startTestBroker() })
test.after.always(async () => { await broker?.close(); await broker?.db.drop() })

interface LintProblem { ruleId: string, severity: 'error' | 'warn', message: string, location: Array<{ pointer: string }> }

async function lint (document: unknown): Promise<{ totals: { errors: number, warnings: number }, problems: LintProblem[] }> {
  const dir = await mkdtemp(join(tmpdir(), 'fleetgate-openapi-'))
  try {
    const file = join(dir, 'openapi.json')
    await writeFile(file, JSON.stringify(document))
    const stdout = await new Promise<string>((resolve, reject) => {
      // Exit code 1 means "problems found": the JSON report is still on stdout.
      execFile(join(root, 'node_modules/.bin/redocly'), ['lint', '--format=json', '--config', join(root, 'redocly.yaml'), file],
        { cwd: root, maxBuffer: 64 * 1024 * 1024, timeout: 60_000, env: { ...process.env, REDOCLY_TELEMETRY: 'off', REDOCLY_SUPPRESS_NOTIFICATIONS: 'true' } },
        (err, out, stderr) => {
          if (out.trim().startsWith('{')) resolve(out)
          else reject(new Error(`redocly lint did not report: ${err?.message ?? ''}\n${stderr}`))
        })
    })
    return JSON.parse(stdout)
  } finally { await rm(dir, { recursive: true, force: true }) }
}

const summary = (problems: LintProblem[]) => {
  const byRule = new Map<string, string[]>()
  for (const p of problems) byRule.set(`${p.severity} ${p.ruleId}`, [...(byRule.get(`${p.severity} ${p.ruleId}`) ?? []), p.location[0]?.pointer ?? ''])
  return [...byRule].map(([rule, where]) => `${rule} ×${where.length}: ${where.slice(0, 5).join(', ')}${where.length > 5 ? ', …' : ''}`).join('\n')
}

test('/openapi.json passes redocly lint (recommended, see redocly.yaml) with zero errors', async (t) => {
  const res = await api(broker.app, 'GET', '/openapi.json', undefined, null)
  t.is(res.status, 200)
  const report = await lint(res.body)
  const errors = report.problems.filter((p) => p.severity === 'error')
  t.log(`redocly: ${report.totals.errors} errors, ${report.totals.warnings} warnings`)
  if (report.problems.length > 0) t.log(summary(report.problems))
  t.is(errors.length, 0, summary(errors))
})

test('the linter does fail a document that breaks the rules (the test can fail)', async (t) => {
  const report = await lint({
    openapi: '3.0.3',
    info: { title: 't', version: '1' },
    paths: { '/x': { get: { summary: 'x', responses: { 404: { description: 'no', content: { 'application/json': { schema: { type: 'object' } } } } } } } }
  })
  const rules = new Set(report.problems.filter((p) => p.severity === 'error').map((p) => p.ruleId))
  for (const rule of ['no-empty-servers', 'info-license', 'operation-operationId', 'operation-2xx-response', 'operation-4xx-problem-details-rfc7807']) t.true(rules.has(rule), rule)
})

test('the document: servers, a license, errors as application/problem+json with the code enum', async (t) => {
  const doc = (await api(broker.app, 'GET', '/openapi.json', undefined, null)).body
  t.deepEqual(doc.servers, [{ url: '/', description: 'the server this document was fetched from' }])
  t.truthy(doc.info.license?.name)
  t.deepEqual(doc.components.schemas.Problem.properties.code.enum, [...PROBLEM_CODES])
  const op = doc.paths['/v1/dead-letters'].get
  t.is(op.operationId, 'listDeadLetters')
  for (const status of ['400', '401', '403', '429', '500']) {
    t.deepEqual(Object.keys(op.responses[status].content), ['application/problem+json'], status)
    t.is(op.responses[status].content['application/problem+json'].schema.$ref, '#/components/schemas/Problem')
  }
  t.deepEqual(Object.keys(op.responses['200'].content), ['application/json'])
  // What the document says is what is served.
  const res = await api(broker.app, 'GET', '/v1/dead-letters?limit=0')
  t.is(res.status, 400)
  t.regex(String(res.headers['content-type']), /^application\/problem\+json/)
  t.true(doc.components.schemas.Problem.properties.code.enum.includes(res.body.code))
})

/** The .ts files under a directory of the repository, recursively. */
async function sources (dir: string): Promise<string[]> {
  const entries = await readdir(join(root, dir), { withFileTypes: true, recursive: true })
  return entries.filter((e) => e.isFile() && e.name.endsWith('.ts')).map((e) => join(e.parentPath, e.name))
}

test('every error code the sources answer with is in the documented enum', async (t) => {
  const thrown = new Set<string>()
  for (const file of [...await sources('devices'), ...await sources('broker'), ...await sources('console')]) {
    const text = await readFile(file, 'utf8')
    for (const m of text.matchAll(/new ApiError\(\s*\d+\s*,\s*'([a-z_]+)'/g)) thrown.add(m[1]!)
    for (const m of text.matchAll(/sendProblem\([^,]+,[^,]+,\s*\d+\s*,\s*'([a-z_]+)'/g)) thrown.add(m[1]!)
  }
  // fastify's and Node's own errors, by status (devices/problem-details.ts).
  const details = await readFile(join(root, 'devices/problem-details.ts'), 'utf8')
  const byStatus = /CODE_BY_STATUS[^=]*=\s*\{([^}]*)\}/.exec(details)?.[1] ?? ''
  for (const m of byStatus.matchAll(/'([a-z_]+)'/g)) thrown.add(m[1]!)
  t.true(thrown.size >= 15, `found only ${[...thrown].join(', ')}`)
  const missing = [...thrown].filter((c) => !(PROBLEM_CODES as readonly string[]).includes(c))
  t.deepEqual(missing, [], 'add these to devices/problem-codes.ts (and the README\'s list of codes)')
})

// The container image, checked by reading the Dockerfile (there is no Docker
// engine on the build machines): multi-stage, production dependencies only,
// non-root, tini as PID 1, a health check, and the same entry point as
// `npm start`; the files it copies exist and .dockerignore keeps them in the
// build context.
import test from 'ava'
import { existsSync } from 'node:fs'
import { readFile } from 'node:fs/promises'

interface Instruction { op: string, args: string, line: number }
interface Stage { from: string, name?: string, instructions: Instruction[] }

function parseDockerfile (text: string): Stage[] {
  const stages: Stage[] = []
  const lines = text.split('\n')
  for (let i = 0; i < lines.length; i++) {
    const start = i
    let line = lines[i]!
    while (/\\\s*$/.test(line) && i + 1 < lines.length) line = line.replace(/\\\s*$/, ' ') + lines[++i]!
    const m = /^\s*([A-Za-z]+)\s+(.*)$/.exec(line)
    if (!m || line.trim().startsWith('#')) continue
    const op = m[1]!.toUpperCase()
    const args = m[2]!.replace(/\s+/g, ' ').trim()
    if (op === 'FROM') {
      const f = /^(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?$/i.exec(args)
      stages.push({ from: f![1]!, name: f![2], instructions: [] })
    } else if (stages.length > 0) {
      stages.at(-1)!.instructions.push({ op, args, line: start + 1 })
    }
  }
  return stages
}

const exec = (args: string): string[] => JSON.parse(args) as string[]

const load = async () => {
  const text = await readFile('Dockerfile', 'utf8')
  const pkg = JSON.parse(await readFile('package.json', 'utf8')) as { scripts: Record<string, string>, engines: { node: string } }
  const ignore = (await readFile('.dockerignore', 'utf8')).split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'))
  const nodeImage = /^ARG NODE_IMAGE=(\S+)$/m.exec(text)?.[1]
  return { text, stages: parseDockerfile(text), pkg, ignore, nodeImage }
}

test('multi-stage: a build stage compiles TypeScript, the final stage installs production dependencies only', async (t) => {
  const { stages, nodeImage, pkg } = await load()
  t.true(stages.length >= 2)
  const build = stages.find((s) => s.name === 'build')
  t.truthy(build)
  const runs = (s: Stage) => s.instructions.filter((i) => i.op === 'RUN').map((i) => i.args)
  t.true(runs(build!).some((r) => /\bnpm ci\b/.test(r) && !/--omit=dev/.test(r)), 'the build stage installs dev dependencies (TypeScript)')
  t.true(runs(build!).some((r) => r.includes('npm run build')))

  const final = stages.at(-1)!
  t.not(final, build)
  t.true(runs(final).some((r) => /\bnpm ci\b.*--omit=dev/.test(r)), 'npm ci --omit=dev in the final stage')
  t.true(final.instructions.some((i) => i.op === 'COPY' && /^--from=build \/app\/dist \.\/dist$/.test(i.args)), 'only dist/ comes from the build stage')
  t.false(final.instructions.some((i) => i.op === 'COPY' && /--from=build .*node_modules/.test(i.args)), 'no dev node_modules in the image')
  // The Node.js LTS slim base, at least the version package.json asks for.
  t.regex(nodeImage ?? '', /^node:(\d+)-(bookworm|trixie)-slim$/)
  const major = Number(/^node:(\d+)/.exec(nodeImage!)![1])
  t.true(major >= Number(/\d+/.exec(pkg.engines.node)![0]) && major % 2 === 0, `node ${major} is an LTS line within engines`)
  for (const s of stages) t.is(s.from, '${NODE_IMAGE}') // eslint-disable-line no-template-curly-in-string -- the Dockerfile's own ARG reference
})

test('runs as a non-root user, with tini as PID 1 and the same command as npm start', async (t) => {
  const { stages, pkg } = await load()
  const final = stages.at(-1)!
  const users = final.instructions.filter((i) => i.op === 'USER')
  t.is(users.length, 1)
  const [uid] = users[0]!.args.split(':')
  t.regex(uid!, /^\d+$/, 'numeric, so Kubernetes runAsNonRoot can verify it')
  t.not(Number(uid), 0)
  // USER comes after every RUN (nothing installed later runs as root).
  const lastRun = Math.max(...final.instructions.filter((i) => i.op === 'RUN').map((i) => i.line))
  t.true(users[0]!.line > lastRun)

  t.true(final.instructions.some((i) => i.op === 'RUN' && /apt-get install .*\btini\b/.test(i.args)))
  const entrypoint = final.instructions.find((i) => i.op === 'ENTRYPOINT')
  t.deepEqual(exec(entrypoint!.args), ['/usr/bin/tini', '--'])

  const cmd = exec(final.instructions.find((i) => i.op === 'CMD')!.args)
  const start = /node (\S+)$/.exec(pkg.scripts.start!)
  t.truthy(start, 'npm start ends with node <file>')
  t.deepEqual(cmd, ['node', start![1]!])
  // The compiled file comes from a source file that the build compiles.
  const source = start![1]!.replace(/^dist\//, '').replace(/\.js$/, '.ts')
  t.true(existsSync(source), `${source} exists`)
  const buildConfig = JSON.parse(await readFile('tsconfig.build.json', 'utf8')) as { include: string[] }
  t.true(buildConfig.include.includes(source.split('/')[0]!), `${source} is compiled by npm run build`)
  // The migration entry point the chart's hook Job runs is there too.
  const migrate = /node (\S+)$/.exec(pkg.scripts.migrate!)![1]!
  t.true(existsSync(migrate.replace(/^dist\//, '').replace(/\.js$/, '.ts')))
})

test('the migrations are in the image, next to dist/ (the broker migrates at start-up)', async (t) => {
  const { stages } = await load()
  const final = stages.at(-1)!
  t.true(final.instructions.some((i) => i.op === 'COPY' && i.args === 'migrations ./migrations'))
  t.is(final.instructions.find((i) => i.op === 'WORKDIR')?.args, '/app')
  // broker/migrator.ts resolves ../migrations from dist/broker to <root>/migrations.
  t.regex(await readFile('broker/migrator.ts', 'utf8'), /new URL\('\.\.\/migrations\/'/)
})

test('HEALTHCHECK asks /healthz on the HTTP port with node (slim has no curl)', async (t) => {
  const { stages } = await load()
  const hc = stages.at(-1)!.instructions.find((i) => i.op === 'HEALTHCHECK')
  t.truthy(hc)
  const m = /CMD (\[.*\])$/.exec(hc!.args)
  const cmd = exec(m![1]!)
  t.is(cmd[0], 'node')
  t.true(cmd.join(' ').includes("fetch('http://127.0.0.1:' + (process.env.HTTP_PORT || 8080) + '/healthz')"))
  // The check itself is valid JavaScript that exits 1 when nothing answers.
  const { spawnSync } = await import('node:child_process')
  const r = spawnSync(process.execPath, cmd.slice(1), { env: { ...process.env, HTTP_PORT: '9' }, timeout: 10_000 })
  t.is(r.status, 1, r.stderr.toString())
})

test('everything the Dockerfile copies exists and is not excluded by .dockerignore', async (t) => {
  const { stages, ignore } = await load()
  for (const want of ['node_modules', 'dist', '.data', 'results', '.git', 'test']) t.true(ignore.includes(want), `.dockerignore excludes ${want}`)
  for (const s of stages) {
    for (const i of s.instructions.filter((x) => x.op === 'COPY' && !x.args.startsWith('--from='))) {
      const sources = i.args.split(' ').slice(0, -1)
      for (const src of sources) {
        t.true(existsSync(src), `COPY ${src} exists`)
        t.false(ignore.some((p) => p === src || p === src.split('/')[0]), `COPY ${src} is in the build context`)
      }
    }
  }
})

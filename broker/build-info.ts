// What is running, for fleetgate_build_info and the start-up log line: the
// package version, the source commit and the aedes version. The commit is
// written into dist/build-info.json by `npm run build` (from git, or from
// the REVISION build argument in the container build); run from source it
// is "unknown".
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'

export interface BuildInfo { version: string, commit: string, aedesVersion: string, nodeVersion: string }

function readJson (url: URL): Record<string, unknown> | undefined {
  try { return JSON.parse(readFileSync(url, 'utf8')) as Record<string, unknown> } catch { return undefined }
}
function readJsonPath (path: string): Record<string, unknown> | undefined {
  try { return JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown> } catch { return undefined }
}

export function readBuildInfo (): BuildInfo {
  // broker/build-info.ts (source) or dist/broker/build-info.js (built).
  const pkg = readJson(new URL('../package.json', import.meta.url)) ?? readJson(new URL('../../package.json', import.meta.url))
  const built = readJson(new URL('../build-info.json', import.meta.url))
  const require = createRequire(import.meta.url)
  // aedes' exports do not include its package.json: found from its entry point.
  let aedesVersion = 'unknown'
  try {
    for (let dir = dirname(require.resolve('aedes')); dir !== dirname(dir); dir = dirname(dir)) {
      const p = readJsonPath(join(dir, 'package.json'))
      if (p?.name === 'aedes') { aedesVersion = String(p.version); break }
    }
  } catch {}
  return {
    version: typeof pkg?.version === 'string' ? pkg.version : 'unknown',
    commit: typeof built?.commit === 'string' ? built.commit : 'unknown',
    aedesVersion,
    nodeVersion: process.version
  }
}

// `npm run build`, after tsc: records the source commit in dist/build-info.json
// (read by broker/build-info.ts for fleetgate_build_info). The commit comes
// from REVISION (the container build passes it) or from git; neither: "unknown".
import { execFileSync } from 'node:child_process'
import { writeFileSync } from 'node:fs'

let commit = process.env.REVISION && process.env.REVISION !== 'unknown' ? process.env.REVISION : undefined
if (!commit) {
  try { commit = execFileSync('git', ['rev-parse', 'HEAD'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim() } catch {}
}
writeFileSync(new URL('../dist/build-info.json', import.meta.url), JSON.stringify({ commit: commit || 'unknown' }) + '\n')

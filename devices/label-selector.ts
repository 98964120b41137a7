import { ApiError } from './api-error.js'

const PART = /^([A-Za-z0-9][A-Za-z0-9_.\/-]{0,62})=([A-Za-z0-9_.:\/@-]{0,128})$/

/** Parses `site=berlin,tier=edge` into {site: 'berlin', tier: 'edge'} (all must match). */
export function parseLabelSelector (selector: string): Record<string, string> {
  const out: Record<string, string> = {}
  if (selector.trim() === '') return out
  for (const part of selector.split(',')) {
    const m = PART.exec(part.trim())
    if (!m) throw new ApiError(400, 'invalid_selector', `label selector part ${JSON.stringify(part)} is not key=value`)
    out[m[1]!] = m[2]!
  }
  return out
}

import { ApiError } from './api-error.js'

const PART = /^([A-Za-z0-9][A-Za-z0-9_.\/-]{0,62})=([A-Za-z0-9_.:\/@-]{0,128})$/

/**
 * Parses `site=berlin,tier=edge` into {site: 'berlin', tier: 'edge'} (all must match).
 * A key given twice (`site=a,site=b`) is refused rather than letting the last
 * one win: the caller meant something the selector cannot say (a device has
 * one value per label), and a rollout must not quietly target other devices.
 */
export function parseLabelSelector (selector: string): Record<string, string> {
  const out: Record<string, string> = {}
  if (selector.trim() === '') return out
  for (const part of selector.split(',')) {
    const m = PART.exec(part.trim())
    if (!m) throw new ApiError(400, 'invalid_selector', `label selector part ${JSON.stringify(part)} is not key=value`)
    if (Object.hasOwn(out, m[1]!)) throw new ApiError(400, 'invalid_selector', `label selector names the key ${JSON.stringify(m[1])} more than once`)
    out[m[1]!] = m[2]!
  }
  return out
}

import { DomainError } from './domain-error.js'
import { parseLabel } from './labels.js'

/**
 * Parses `site=berlin,tier=edge` into {site: 'berlin', tier: 'edge'} (all must match).
 * Keys and values follow the label rules of devices/labels.ts: a selector
 * naming a label no device can have is refused with the message that refuses
 * that label elsewhere, not answered with an empty match.
 * A key given twice (`site=a,site=b`) is refused rather than letting the last
 * one win: the caller meant something the selector cannot say (a device has
 * one value per label), and a rollout must not quietly target other devices.
 */
export function parseLabelSelector (selector: string): Record<string, string> {
  const out: Record<string, string> = {}
  if (selector.trim() === '') return out
  for (const part of selector.split(',')) {
    const text = part.trim()
    if (text.indexOf('=') <= 0) throw new DomainError('invalid_selector', `label selector part ${JSON.stringify(part)} is not key=value`)
    const label = parseLabel(text)
    if ('error' in label) throw new DomainError('invalid_selector', label.error)
    if (Object.hasOwn(out, label.key)) throw new DomainError('invalid_selector', `label selector names the key ${JSON.stringify(label.key)} more than once`)
    out[label.key] = label.value
  }
  return out
}

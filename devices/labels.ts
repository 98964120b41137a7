// The one definition of what a device label may be (issue "Configuration
// errors", item 4). The REST schemas (devices/schemas.ts), the REST routes,
// the device:create CLI and label selectors (devices/label-selector.ts) all
// take their rules and their error messages from here, so a label refused by
// one entry point is refused by every other one, in the same words.

/** Keys: a letter or digit, then up to 62 of letters, digits, _ . / - */
export const LABEL_KEY_PATTERN = '^[A-Za-z0-9][A-Za-z0-9_./-]{0,62}$'
/** Values: up to 128 of letters, digits, _ . : / @ - (may be empty). */
export const LABEL_VALUE_PATTERN = '^[A-Za-z0-9_.:/@-]*$'
export const LABEL_VALUE_MAX_LENGTH = 128

const KEY = new RegExp(LABEL_KEY_PATTERN)
const VALUE = new RegExp(LABEL_VALUE_PATTERN)

const KEY_RULE = '1 to 63 letters, digits or _ . / -, starting with a letter or digit'
const VALUE_RULE = `up to ${LABEL_VALUE_MAX_LENGTH} letters, digits or _ . : / @ -`

/** Why this label is refused, or undefined when it is fine. */
export function labelError (key: string, value: unknown): string | undefined {
  if (!KEY.test(key)) return `invalid label key ${JSON.stringify(key)}: use ${KEY_RULE}`
  if (typeof value !== 'string') return `invalid label value ${key}: must be a string`
  if (value.length > LABEL_VALUE_MAX_LENGTH || !VALUE.test(value)) return `invalid label value ${key}=${JSON.stringify(value)}: use ${VALUE_RULE}`
  return undefined
}

/** The first refused label of a set, or undefined. */
export function labelsError (labels: Record<string, unknown>): string | undefined {
  for (const [key, value] of Object.entries(labels)) {
    const problem = labelError(key, value)
    if (problem) return problem
  }
  return undefined
}

export type ParsedLabel = { key: string, value: string } | { error: string }

/** Parses one `key=value` (a CLI flag, a part of a selector); split at the first `=`. */
export function parseLabel (text: string): ParsedLabel {
  const eq = text.indexOf('=')
  if (eq <= 0) return { error: `label ${JSON.stringify(text)} is not key=value` }
  const key = text.slice(0, eq)
  const value = text.slice(eq + 1)
  const error = labelError(key, value)
  return error ? { error } : { key, value }
}

// Parsing and checking of option values, before any request: a mistake is a
// usage error (exit 2) that names the flag and says what was expected, e.g.
// `--selector: expected key=value[,key=value…], got 'site'`.
import { readFileSync } from 'node:fs'
import { UsageError } from './exit-codes.js'

const quote = (s: string) => `'${s.length > 80 ? s.slice(0, 79) + '…' : s}'`

/** A label selector `k=v,k=v` (the API checks the key and value rules). `allowEmpty`: '' selects every device. */
export function parseSelector (flag: string, text: string, allowEmpty = false): string {
  const trimmed = text.trim()
  if (trimmed === '') {
    if (allowEmpty) return ''
    throw new UsageError(`${flag}: expected key=value[,key=value…], got an empty selector`)
  }
  for (const part of trimmed.split(',')) {
    if (part.indexOf('=') <= 0) throw new UsageError(`${flag}: expected key=value[,key=value…], got ${quote(text)}`)
  }
  return trimmed
}

/** `key=value` of a repeatable --label, collected into an object. */
export function collectLabel (value: string, previous: Record<string, string> | undefined): Record<string, string> {
  const eq = value.indexOf('=')
  if (eq <= 0) throw new UsageError(`--label: expected key=value, got ${quote(value)}`)
  const key = value.slice(0, eq)
  const labels = { ...previous }
  if (Object.hasOwn(labels, key)) throw new UsageError(`--label: ${key} is given more than once`)
  labels[key] = value.slice(eq + 1)
  return labels
}

export function collect (value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value]
}

/** An integer option in [min, max]. */
export function integer (flag: string, min: number, max: number) {
  return (value: string): number => {
    const n = Number(value)
    if (!/^-?\d+$/.test(value.trim()) || !Number.isSafeInteger(n) || n < min || n > max) {
      throw new UsageError(`${flag}: expected an integer from ${min} to ${max}, got ${quote(value)}`)
    }
    return n
  }
}

/** A number option in [min, max]. */
export function decimal (flag: string, min: number, max: number) {
  return (value: string): number => {
    const n = Number(value)
    if (value.trim() === '' || !Number.isFinite(n) || n < min || n > max) throw new UsageError(`${flag}: expected a number from ${min} to ${max}, got ${quote(value)}`)
    return n
  }
}

/** One of a fixed set of words. */
export function oneOf<T extends string> (flag: string, values: readonly T[]) {
  return (value: string): T => {
    if (!(values as readonly string[]).includes(value)) throw new UsageError(`${flag}: expected one of ${values.join(', ')}, got ${quote(value)}`)
    return value as T
  }
}

const UNITS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }

/** A time: ISO 8601, or a duration back from now (`90s`, `15m`, `2h`, `7d`). Returns ISO 8601. */
export function parseTime (flag: string, value: string, now = Date.now()): string {
  const rel = /^(\d+)([smhd])$/.exec(value.trim())
  if (rel) return new Date(now - Number(rel[1]) * UNITS[rel[2]!]!).toISOString()
  if (/^\d{4}-\d{2}-\d{2}/.test(value) && !Number.isNaN(Date.parse(value))) {
    // A time without a zone would be read in the local zone by Date.parse; the API wants one.
    return new Date(Date.parse(value)).toISOString()
  }
  throw new UsageError(`${flag}: expected an ISO 8601 time (2026-11-29T10:00:00Z) or a duration back from now (90s, 15m, 2h, 7d), got ${quote(value)}`)
}

export const timeOption = (flag: string) => (value: string) => parseTime(flag, value)

/**
 * A JSON object given inline, or read from a file with `@path` (`@-`: stdin),
 * like curl's `-d @file`.
 */
export function parseJsonObject (flag: string, value: string): Record<string, unknown> {
  let text = value
  if (value.startsWith('@')) {
    const path = value.slice(1)
    try {
      text = readFileSync(path === '-' ? 0 : path, 'utf8')
    } catch (err) {
      throw new UsageError(`${flag}: cannot read ${path === '-' ? 'stdin' : path} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`)
    }
  }
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch (err) {
    throw new UsageError(`${flag}: expected a JSON object such as '{"intervalSeconds":10}' or @file.json, got ${quote(text.trim())} (${(err as Error).message})`)
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new UsageError(`${flag}: expected a JSON object ({…}), got ${quote(text.trim())}`)
  }
  return parsed as Record<string, unknown>
}

/** Comma-separated values, each non-empty. */
export function parseList (flag: string, value: string): string[] {
  const items = value.split(',').map((s) => s.trim())
  if (items.some((s) => s === '')) throw new UsageError(`${flag}: expected a comma-separated list such as a,b,c, got ${quote(value)}`)
  return items
}
